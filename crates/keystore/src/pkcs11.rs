//! Keys in a PKCS#11 token (a hardware security module, a cloud HSM's PKCS#11 library, or
//! SoftHSM2), named by an RFC 7512 `pkcs11:` URI, used through `cryptoki`.
//!
//! What the broker relies on:
//! - the private key never leaves the token: [`Pkcs11Token::generate_ca_key`] and
//!   [`Pkcs11Token::generate_federation_key`] make keys with `CKA_SENSITIVE` true and
//!   `CKA_EXTRACTABLE` false, and a key opened with [`Pkcs11Token::signing_key`] is refused
//!   unless the token says so of it;
//! - every signature is one `C_Sign` (ECDSA over a digest hashed here, so tokens without the
//!   combined `CKM_ECDSA_SHA256` work too; `CKM_SHA256_RSA_PKCS` for RSA);
//! - the HMAC key ([`Pkcs11Token::mac_key`], `CKM_SHA256_HMAC`) gives every replica that uses
//!   the same token the same derived bytes, with nothing stored outside the token;
//! - a session the token dropped (restart, network HSM reconnect) is reopened and logged in
//!   again once per call before the call fails.
//!
//! The PIN is the one secret: it reaches this module as a `SecretString` and is never printed.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use svid_broker_identity::secret::SecretString;
use svid_broker_token::external::{
    ExternalAlgorithm, ExternalKey, ExternalKeyError, ExternalMac, MAX_SPKI_LEN,
};
use zeroize::Zeroizing;

mod der;
mod uri;

pub use uri::{MAX_URI_LEN, ObjectType, Pkcs11Uri};

/// Why a token or a key in it could not be used. Never carries the PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// The `pkcs11:` URI broke a rule (RFC 7512 syntax, or what this broker accepts of it).
    #[error("pkcs11 uri is invalid: {rule}")]
    InvalidUri {
        /// The rule, naming the attribute at fault but never its value (so never a PIN).
        rule: String,
    },
    /// The module path is not an absolute path to a regular file that only its owner may
    /// write: the module is native code the broker runs.
    #[error("pkcs11 module {path}: {rule}")]
    UnsafeModule {
        /// The module path as configured.
        path: PathBuf,
        /// The rule the file breaks, as a fixed phrase (`must be an absolute path`).
        rule: &'static str,
    },
    /// Loading or initializing the module failed.
    #[error("pkcs11 module {path} could not be loaded")]
    ModuleLoad {
        /// The module path as configured (already checked to be a safe file).
        path: PathBuf,
        /// cryptoki's error.
        #[source]
        source: CkError,
    },
    /// Not exactly one token matched the URI's token attributes.
    #[error("{matched} tokens match {uri} (exactly one must)")]
    TokenNotUnique {
        /// The URI's token attributes only, without secrets.
        uri: String,
        /// How many tokens matched: 0, or more than 1.
        matched: usize,
    },
    /// Not exactly one object matched the URI's object attributes.
    #[error("{matched} {class} objects match {uri} (exactly one must)")]
    ObjectNotUnique {
        /// The URI, without secrets.
        uri: String,
        /// The object class looked for: `private key`, `public key` or `secret key`.
        class: &'static str,
        /// How many objects matched: 0 (also after one fresh login), or more than 1.
        matched: usize,
    },
    /// An object exists where a key was to be generated: generating never replaces a key.
    #[error("{uri} already holds a {class}; refusing to generate over it")]
    ObjectExists {
        /// The URI, without secrets.
        uri: String,
        /// The class of the object found: `private key`, `public key` or `secret key`.
        class: &'static str,
    },
    /// The key is not what the broker needs of it (extractable, not sensitive, not a signing
    /// key of a supported type).
    #[error("{uri}: {rule}")]
    UnsuitableKey {
        /// The URI, without secrets.
        uri: String,
        /// The rule the key breaks, as a fixed phrase.
        rule: &'static str,
    },
    /// The token refused the PIN earlier in this process; it is not tried again, since
    /// tokens lock a PIN after a few failed logins. Fix the PIN and restart.
    #[error(
        "{uri}: the token refused the pin before; not trying it again (restart with the right pin)"
    )]
    PinRefused {
        /// The token, without secrets.
        uri: String,
    },
    /// A PKCS#11 call failed.
    #[error("{uri}: {operation} failed")]
    Call {
        /// The URI, without secrets.
        uri: String,
        /// What was being done, as a fixed phrase (`listing slots`, `signing (C_Sign)`).
        operation: &'static str,
        /// cryptoki's error (the PKCS#11 return value and function).
        #[source]
        source: CkError,
    },
}

// === Module ===

/// One loaded and initialized PKCS#11 module. `C_Initialize` may be called once per process
/// per module, so modules are shared through [`Pkcs11Module::load`].
pub struct Pkcs11Module {
    context: Pkcs11,
    path: PathBuf,
}

impl fmt::Debug for Pkcs11Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Module")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn loaded_modules() -> &'static Mutex<HashMap<PathBuf, Arc<Pkcs11Module>>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Pkcs11Module>>>> = OnceLock::new();
    MODULES.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Pkcs11Module {
    /// Loads and initializes the module at `path` (absolute, a regular file that neither its
    /// group nor others may write), or returns the one this process already loaded.
    ///
    /// # Errors
    /// [`Pkcs11Error::UnsafeModule`] or [`Pkcs11Error::ModuleLoad`].
    pub fn load(path: &Path) -> Result<Arc<Self>, Pkcs11Error> {
        check_module_file(path)?;
        let mut modules = loaded_modules()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.get(path) {
            return Ok(module.clone());
        }
        let load_error = |source| Pkcs11Error::ModuleLoad {
            path: path.to_owned(),
            source,
        };
        let context = Pkcs11::new(path).map_err(load_error)?;
        // OS locking: the broker calls from several threads; the module serializes as it must.
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(source) => return Err(load_error(source)),
        }
        let module = Arc::new(Self {
            context,
            path: path.to_owned(),
        });
        modules.insert(path.to_owned(), module.clone());
        Ok(module)
    }

    /// The module's path as loaded: absolute, and the key of the per-process module cache.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn check_module_file(path: &Path) -> Result<(), Pkcs11Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let unsafe_module = |rule| Pkcs11Error::UnsafeModule {
        path: path.to_owned(),
        rule,
    };
    if !path.is_absolute() {
        return Err(unsafe_module("must be an absolute path"));
    }
    let metadata = std::fs::metadata(path).map_err(|_| unsafe_module("cannot be read"))?;
    if !metadata.is_file() {
        return Err(unsafe_module("is not a regular file"));
    }
    if metadata.permissions().mode() & 0o022 != 0 {
        return Err(unsafe_module(
            "may be written by its group or others (the broker would run whatever it holds)",
        ));
    }
    Ok(())
}

// === Token ===

/// A logged-in token: one slot of a module, one session, the PIN kept to log in again.
pub struct Pkcs11Token {
    module: Arc<Pkcs11Module>,
    slot: Slot,
    /// The token part of the URI (no object attributes), for errors.
    description: String,
    pin: SecretString,
    /// Set once the token refused the PIN: never tried again (see `login`).
    pin_refused: AtomicBool,
    /// cryptoki's `Session` is `Send` but not `Sync`: one call at a time, which is what a
    /// token does anyway.
    session: Mutex<Option<Session>>,
}

impl fmt::Debug for Pkcs11Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Token")
            .field("token", &self.description)
            .field("module", &self.module.path)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Token {
    /// Opens the one token of `module` matching `uri`'s token attributes and logs in as the
    /// user with `pin` (read-write, so the same session can generate keys).
    ///
    /// # Errors
    /// [`Pkcs11Error::TokenNotUnique`], or [`Pkcs11Error::Call`] (a wrong PIN is
    /// `C_Login` failing with `CKR_PIN_INCORRECT`).
    pub fn open(
        module: Arc<Pkcs11Module>,
        uri: &Pkcs11Uri,
        pin: SecretString,
    ) -> Result<Arc<Self>, Pkcs11Error> {
        let description = uri.token_part();
        let call = |operation| {
            let uri = description.clone();
            move |source| Pkcs11Error::Call {
                uri,
                operation,
                source,
            }
        };
        let slots = module
            .context
            .get_slots_with_token()
            .map_err(call("listing slots"))?;
        let mut matching = Vec::new();
        for slot in slots {
            let info = module
                .context
                .get_token_info(slot)
                .map_err(call("reading token info"))?;
            if uri.matches_token(slot.id(), &info) {
                matching.push(slot);
            }
        }
        let [slot] = matching[..] else {
            return Err(Pkcs11Error::TokenNotUnique {
                uri: description,
                matched: matching.len(),
            });
        };
        let token = Self {
            module,
            slot,
            description,
            pin,
            pin_refused: AtomicBool::new(false),
            session: Mutex::new(None),
        };
        {
            let mut session = token.session.lock().unwrap_or_else(PoisonError::into_inner);
            *session = Some(token.login()?);
        }
        Ok(Arc::new(token))
    }

    fn login(&self) -> Result<Session, Pkcs11Error> {
        let call = |operation| {
            move |source| Pkcs11Error::Call {
                uri: self.description.clone(),
                operation,
                source,
            }
        };
        if self.pin_refused.load(Ordering::Acquire) {
            return Err(Pkcs11Error::PinRefused {
                uri: self.description.clone(),
            });
        }
        let session = self
            .module
            .context
            .open_rw_session(self.slot)
            .map_err(call("opening a session"))?;
        match session.login(UserType::User, Some(&self.pin)) {
            // Login state is the application's, per token: another session of this process
            // logged in already.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(source) => {
                // A token counts failed logins and locks its user PIN after a few: a PIN it
                // refused once is never tried again by this process.
                if matches!(
                    source,
                    CkError::Pkcs11(
                        RvError::PinIncorrect | RvError::PinLocked | RvError::PinExpired,
                        _
                    )
                ) {
                    self.pin_refused.store(true, Ordering::Release);
                }
                Err(call("logging in (C_Login)")(source))
            }
        }
    }

    /// Runs `f` on the session; when the token says the session or the login is gone (or a
    /// key `f` looks up is missing, as private objects are when the login is), opens a new
    /// session, logs in, and runs `f` once more. `f` looks its objects up itself, so the retry
    /// never uses a handle of the lost session.
    fn with_session<T>(
        &self,
        operation: &'static str,
        f: impl Fn(&Session) -> Result<T, SessionError>,
    ) -> Result<T, Pkcs11Error> {
        let final_error = |error| match error {
            SessionError::Call(source) => Pkcs11Error::Call {
                uri: self.description.clone(),
                operation,
                source,
            },
            SessionError::Objects {
                uri,
                class,
                matched,
            } => Pkcs11Error::ObjectNotUnique {
                uri,
                class,
                matched,
            },
        };
        let mut guard = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let session = match guard.take() {
            Some(session) => session,
            None => self.login()?,
        };
        match f(&session) {
            Ok(value) => {
                *guard = Some(session);
                Ok(value)
            }
            Err(error) if error.may_be_lost_login() => {
                // Closing a session the token already lost may fail; that changes nothing.
                drop(session);
                let session = self.login()?;
                let result = f(&session);
                *guard = Some(session);
                result.map_err(final_error)
            }
            Err(error) => {
                *guard = Some(session);
                Err(final_error(error))
            }
        }
    }

    /// The signing key `uri` names: a private key (`type=private` or no `type`) with its
    /// public key object alongside (same `CKA_ID` or label), sensitive and not extractable.
    ///
    /// # Errors
    /// [`Pkcs11Error::ObjectNotUnique`], [`Pkcs11Error::UnsuitableKey`] or
    /// [`Pkcs11Error::Call`].
    pub fn signing_key(self: &Arc<Self>, uri: &Pkcs11Uri) -> Result<Pkcs11Key, Pkcs11Error> {
        if !matches!(uri.object_type(), None | Some(ObjectType::Private)) {
            return Err(Pkcs11Error::InvalidUri {
                rule: "a signing key's uri must name a private key (type=private or no type)"
                    .into(),
            });
        }
        let description = uri.to_string();
        let private = self.find_one(uri, ObjectClass::PRIVATE_KEY, "private key")?;
        let unsuitable = |rule| Pkcs11Error::UnsuitableKey {
            uri: description.clone(),
            rule,
        };
        let attributes = self.with_session("reading the private key's attributes", |s| {
            Ok(s.get_attributes(
                private,
                &[
                    AttributeType::KeyType,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Sign,
                ],
            )?)
        })?;
        let (mut key_type, mut sign) = (None, false);
        let mut kept_in = KeptIn::default();
        for attribute in attributes {
            match attribute {
                Attribute::KeyType(kind) => key_type = Some(kind),
                Attribute::Sign(value) => sign = value,
                other => kept_in.note(&other),
            }
        }
        if !kept_in.never_left() {
            return Err(unsuitable(
                "the private key is or was extractable or not sensitive: the broker only signs with keys that never could leave the token (CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE true; CKA_EXTRACTABLE false)",
            ));
        }
        if !sign {
            return Err(unsuitable(
                "the private key may not sign (CKA_SIGN is false)",
            ));
        }
        let public = self.find_one(uri, ObjectClass::PUBLIC_KEY, "public key")?;
        let (algorithm, spki) = match key_type {
            Some(KeyType::EC) => self.ec_public_key(public, &description)?,
            Some(KeyType::RSA) => self.rsa_public_key(public, &description)?,
            _ => return Err(unsuitable("the key is neither an EC nor an RSA key")),
        };
        Ok(Pkcs11Key {
            token: self.clone(),
            uri: uri.clone(),
            description,
            algorithm,
            spki,
        })
    }

    /// The HMAC-SHA256 key `uri` names (class secret key, whatever `type` says), which must
    /// be sensitive and not extractable.
    ///
    /// # Errors
    /// [`Pkcs11Error::ObjectNotUnique`], [`Pkcs11Error::UnsuitableKey`] or
    /// [`Pkcs11Error::Call`].
    pub fn mac_key(self: &Arc<Self>, uri: &Pkcs11Uri) -> Result<Pkcs11Mac, Pkcs11Error> {
        let description = uri.with_type(ObjectType::SecretKey).to_string();
        let handle = self.find_one(uri, ObjectClass::SECRET_KEY, "secret key")?;
        let attributes = self.with_session("reading the secret key's attributes", |s| {
            Ok(s.get_attributes(
                handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                ],
            )?)
        })?;
        let mut kept_in = KeptIn::default();
        for attribute in attributes {
            kept_in.note(&attribute);
        }
        if !kept_in.never_left() {
            return Err(Pkcs11Error::UnsuitableKey {
                uri: description,
                rule: "the HMAC key is or was extractable or not sensitive",
            });
        }
        Ok(Pkcs11Mac {
            token: self.clone(),
            uri: uri.clone(),
            description,
        })
    }

    /// Generates the signing CA's key pair in the token under `uri`'s label (and `id`, when
    /// it has one), plus the 32-byte HMAC key the broker derives its credential MAC keys
    /// from under `mac_uri`'s (the same label by default): all on the token, sensitive, never
    /// extractable. Refuses when any key with those labels or ids exists: generating never
    /// replaces a key.
    ///
    /// # Errors
    /// [`Pkcs11Error::ObjectExists`], [`Pkcs11Error::InvalidUri`] (no `object` label), or
    /// [`Pkcs11Error::Call`].
    pub fn generate_ca_key(
        self: &Arc<Self>,
        uri: &Pkcs11Uri,
        mac_uri: &Pkcs11Uri,
        algorithm: ExternalAlgorithm,
    ) -> Result<(), Pkcs11Error> {
        self.refuse_existing(
            uri,
            &[
                (ObjectClass::PRIVATE_KEY, "private key"),
                (ObjectClass::PUBLIC_KEY, "public key"),
            ],
        )?;
        self.refuse_existing(mac_uri, &[(ObjectClass::SECRET_KEY, "secret key")])?;
        self.generate_pair(uri, algorithm)?;
        let mut template = key_template(mac_uri)?;
        template.extend(secret_attributes());
        template.extend([
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Sign(true),
            Attribute::Verify(true),
        ]);
        self.with_session("generating the HMAC key (C_GenerateKey)", |s| {
            Ok(s.generate_key(&Mechanism::GenericSecretKeyGen, &template)?)
        })?;
        Ok(())
    }

    /// Generates an RSA-2048 key pair for the federation issuer under `uri`'s label (and
    /// `id`), on the token, sensitive, never extractable; refuses when a key is there.
    ///
    /// # Errors
    /// As [`Self::generate_ca_key`].
    pub fn generate_federation_key(self: &Arc<Self>, uri: &Pkcs11Uri) -> Result<(), Pkcs11Error> {
        self.refuse_existing(
            uri,
            &[
                (ObjectClass::PRIVATE_KEY, "private key"),
                (ObjectClass::PUBLIC_KEY, "public key"),
            ],
        )?;
        self.generate_pair(uri, ExternalAlgorithm::RsaPkcs1Sha256)
    }

    fn generate_pair(
        &self,
        uri: &Pkcs11Uri,
        algorithm: ExternalAlgorithm,
    ) -> Result<(), Pkcs11Error> {
        let common = key_template(uri)?;
        let mut public = common.clone();
        let mut private = common;
        public.extend([Attribute::Verify(true), Attribute::Private(false)]);
        private.extend(secret_attributes());
        private.push(Attribute::Sign(true));
        let mechanism = match algorithm {
            ExternalAlgorithm::RsaPkcs1Sha256 => {
                public.extend([
                    Attribute::ModulusBits(2048.into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                ]);
                Mechanism::RsaPkcsKeyPairGen
            }
            ExternalAlgorithm::EcdsaP384Sha384 => {
                public.push(Attribute::EcParams(der::P384_OID.to_vec()));
                Mechanism::EccKeyPairGen
            }
            _ => {
                public.push(Attribute::EcParams(der::P256_OID.to_vec()));
                Mechanism::EccKeyPairGen
            }
        };
        self.with_session("generating the key pair (C_GenerateKeyPair)", |s| {
            Ok(s.generate_key_pair(&mechanism, &public, &private)?)
        })?;
        Ok(())
    }

    fn refuse_existing(
        &self,
        uri: &Pkcs11Uri,
        classes: &[(ObjectClass, &'static str)],
    ) -> Result<(), Pkcs11Error> {
        // By label and by id apart: a key sharing either would make the URI ambiguous later.
        for &(class, name) in classes {
            for template in uri.existing_object_templates(class) {
                let found = self.with_session("looking for existing keys", |s| {
                    Ok(s.find_objects(&template)?)
                })?;
                if !found.is_empty() {
                    return Err(Pkcs11Error::ObjectExists {
                        uri: uri.to_string(),
                        class: name,
                    });
                }
            }
        }
        Ok(())
    }

    fn find_one(
        &self,
        uri: &Pkcs11Uri,
        class: ObjectClass,
        class_name: &'static str,
    ) -> Result<ObjectHandle, Pkcs11Error> {
        self.with_session("finding the key (C_FindObjects)", |s| {
            find_one_on(s, uri, class, class_name)
        })
    }

    fn ec_public_key(
        &self,
        public: ObjectHandle,
        description: &str,
    ) -> Result<(ExternalAlgorithm, Vec<u8>), Pkcs11Error> {
        let attributes = self.with_session("reading the EC public key", |s| {
            Ok(s.get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])?)
        })?;
        let (mut params, mut point) = (Vec::new(), Vec::new());
        for attribute in attributes {
            match attribute {
                Attribute::EcParams(value) => params = value,
                Attribute::EcPoint(value) => point = value,
                _ => {}
            }
        }
        der::ec_spki(&params, &point).map_err(|rule| Pkcs11Error::UnsuitableKey {
            uri: description.to_owned(),
            rule,
        })
    }

    fn rsa_public_key(
        &self,
        public: ObjectHandle,
        description: &str,
    ) -> Result<(ExternalAlgorithm, Vec<u8>), Pkcs11Error> {
        let attributes = self.with_session("reading the RSA public key", |s| {
            Ok(s.get_attributes(
                public,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )?)
        })?;
        let (mut modulus, mut exponent) = (Vec::new(), Vec::new());
        for attribute in attributes {
            match attribute {
                Attribute::Modulus(value) => modulus = value,
                Attribute::PublicExponent(value) => exponent = value,
                _ => {}
            }
        }
        let spki =
            der::rsa_spki(&modulus, &exponent).map_err(|rule| Pkcs11Error::UnsuitableKey {
                uri: description.to_owned(),
                rule,
            })?;
        Ok((ExternalAlgorithm::RsaPkcs1Sha256, spki))
    }
}

/// What every generated object carries: kept on the token, the URI's label and id.
fn key_template(uri: &Pkcs11Uri) -> Result<Vec<Attribute>, Pkcs11Error> {
    let Some(label) = uri.object_label() else {
        return Err(Pkcs11Error::InvalidUri {
            rule: "generating a key needs the uri's object (its label)".into(),
        });
    };
    let mut template = vec![
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = uri.object_id() {
        template.push(Attribute::Id(id.to_vec()));
    }
    Ok(template)
}

/// What a private or secret key carries: usable only after login, and never readable outside
/// the token (a public key takes neither attribute).
fn secret_attributes() -> [Attribute; 3] {
    [
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
    ]
}

/// Whether a key is, and always was, beyond reading: `CKA_SENSITIVE`, `CKA_ALWAYS_SENSITIVE`
/// and `CKA_NEVER_EXTRACTABLE` true, `CKA_EXTRACTABLE` false. The `ALWAYS`/`NEVER` pair is
/// what tells a key generated in the token from one imported, or exported once and locked
/// after. A missing attribute counts against the key.
#[derive(Default)]
struct KeptIn {
    sensitive: bool,
    always_sensitive: bool,
    never_extractable: bool,
    extractable_now: Option<bool>,
}

impl KeptIn {
    fn note(&mut self, attribute: &Attribute) {
        match attribute {
            Attribute::Sensitive(value) => self.sensitive = *value,
            Attribute::AlwaysSensitive(value) => self.always_sensitive = *value,
            Attribute::NeverExtractable(value) => self.never_extractable = *value,
            Attribute::Extractable(value) => self.extractable_now = Some(*value),
            _ => {}
        }
    }

    fn never_left(&self) -> bool {
        self.sensitive
            && self.always_sensitive
            && self.never_extractable
            && self.extractable_now == Some(false)
    }
}

/// What a call on the session can fail with.
enum SessionError {
    /// A PKCS#11 function failed.
    Call(CkError),
    /// Not exactly one object matched a lookup.
    Objects {
        uri: String,
        class: &'static str,
        matched: usize,
    },
}

impl From<CkError> for SessionError {
    fn from(error: CkError) -> Self {
        Self::Call(error)
    }
}

impl SessionError {
    /// Failures a fresh session and login cure: the session or the login is gone, or a
    /// private or secret key is missing, which is how a token that lost the login answers a
    /// lookup (it hides private objects).
    fn may_be_lost_login(&self) -> bool {
        match self {
            Self::Call(error) => matches!(
                error,
                CkError::Pkcs11(
                    RvError::SessionHandleInvalid
                        | RvError::SessionClosed
                        | RvError::UserNotLoggedIn
                        | RvError::DeviceRemoved
                        | RvError::TokenNotPresent,
                    _
                )
            ),
            Self::Objects { matched, .. } => *matched == 0,
        }
    }
}

/// The one object of `class` `uri` names, looked up on `session`.
fn find_one_on(
    session: &Session,
    uri: &Pkcs11Uri,
    class: ObjectClass,
    class_name: &'static str,
) -> Result<ObjectHandle, SessionError> {
    let found = session.find_objects(&uri.object_template(class))?;
    match found[..] {
        [handle] => Ok(handle),
        _ => Err(SessionError::Objects {
            uri: uri.to_string(),
            class: class_name,
            matched: found.len(),
        }),
    }
}

/// A refusal when the token answered no to this key (PIN, permissions, mechanism), else
/// unavailable: a retry, or the token back, may cure it.
fn store_error(description: &str, error: &Pkcs11Error) -> ExternalKeyError {
    let store = description.to_owned();
    let reason = svid_broker_identity::report::ErrorChain::new(error).to_string();
    let refused = matches!(
        error,
        Pkcs11Error::Call {
            source: CkError::Pkcs11(
                RvError::PinIncorrect
                    | RvError::PinExpired
                    | RvError::PinLocked
                    | RvError::KeyFunctionNotPermitted
                    | RvError::KeyHandleInvalid
                    | RvError::MechanismInvalid
                    | RvError::KeyTypeInconsistent,
                _
            ),
            ..
        } | Pkcs11Error::PinRefused { .. }
            | Pkcs11Error::ObjectNotUnique { .. }
            | Pkcs11Error::UnsuitableKey { .. }
    );
    if refused {
        ExternalKeyError::Refused { store, reason }
    } else {
        ExternalKeyError::Unavailable { store, reason }
    }
}

// === Keys ===

/// A signing key in a token. The private key is found again by its URI for every signature,
/// so a reconnected token (whose object handles may differ) still signs.
pub struct Pkcs11Key {
    token: Arc<Pkcs11Token>,
    uri: Pkcs11Uri,
    description: String,
    algorithm: ExternalAlgorithm,
    spki: Vec<u8>,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("uri", &self.description)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl ExternalKey for Pkcs11Key {
    fn describe(&self) -> &str {
        &self.description
    }

    fn algorithm(&self) -> ExternalAlgorithm {
        self.algorithm
    }

    fn public_key_spki(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ExternalKeyError> {
        let (mechanism, input) = match self.algorithm {
            ExternalAlgorithm::RsaPkcs1Sha256 => (Mechanism::Sha256RsaPkcs, message.to_vec()),
            ExternalAlgorithm::EcdsaP384Sha384 => (
                Mechanism::Ecdsa,
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, message)
                    .as_ref()
                    .to_vec(),
            ),
            _ => (
                Mechanism::Ecdsa,
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message)
                    .as_ref()
                    .to_vec(),
            ),
        };
        let signature = self
            .token
            .with_session("signing (C_Sign)", |s| {
                let handle = find_one_on(s, &self.uri, ObjectClass::PRIVATE_KEY, "private key")?;
                Ok(s.sign(&mechanism, handle, &input)?)
            })
            .map_err(|e| store_error(&self.description, &e))?;
        match self.algorithm.ecdsa_scalar_len() {
            // PKCS#11 ECDSA signatures are `r || s`; the seam hands out DER.
            Some(scalar) => der::ecdsa_fixed_to_der(&signature, scalar).map_err(|rule| {
                ExternalKeyError::Malformed {
                    store: self.description.clone(),
                    rule,
                }
            }),
            None => Ok(signature),
        }
    }
}

/// An HMAC-SHA256 secret key kept in a token, sensitive and never extractable; it is found
/// again by its URI for every tag.
pub struct Pkcs11Mac {
    token: Arc<Pkcs11Token>,
    uri: Pkcs11Uri,
    description: String,
}

impl fmt::Debug for Pkcs11Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Mac")
            .field("uri", &self.description)
            .finish_non_exhaustive()
    }
}

impl ExternalMac for Pkcs11Mac {
    fn describe(&self) -> &str {
        &self.description
    }

    fn hmac_sha256(&self, message: &[u8]) -> Result<Zeroizing<[u8; 32]>, ExternalKeyError> {
        let tag = Zeroizing::new(
            self.token
                .with_session("computing an HMAC (C_Sign)", |s| {
                    let handle = find_one_on(s, &self.uri, ObjectClass::SECRET_KEY, "secret key")?;
                    Ok(s.sign(&Mechanism::Sha256Hmac, handle, message)?)
                })
                .map_err(|e| store_error(&self.description, &e))?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        if tag.len() != out.len() {
            return Err(ExternalKeyError::Malformed {
                store: self.description.clone(),
                rule: "HMAC-SHA256 answer is not 32 bytes",
            });
        }
        out.copy_from_slice(&tag);
        Ok(out)
    }
}

/// The longest public key this module builds (kept under the seam's own cap).
const _: () = assert!(der::MAX_BUILT_SPKI_LEN <= MAX_SPKI_LEN);
