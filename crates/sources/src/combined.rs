//! [`CombinedBundles`]: one [`BundleSet`] from several sources, never merging two bundles of the
//! same trust domain.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use svid_broker_identity::bundle::{BundleProvider, BundleSet, SpiffeBundle};
use svid_broker_identity::id::TrustDomain;

/// Two sources offered a bundle for the same trust domain. The source configured first wins; the
/// other source's bundle for that trust domain is left out (and an error is logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "trust domain {trust_domain} is provided by source {kept} and source {dropped}; using source {kept} only"
)]
pub struct TrustDomainConflict {
    /// The contested trust domain.
    pub trust_domain: TrustDomain,
    /// Index (in configuration order) of the source whose bundle is used.
    pub kept: usize,
    /// Index of the source whose bundle is ignored.
    pub dropped: usize,
}

/// A [`BundleProvider`] that unions several providers' sets.
///
/// Why "first wins" rather than merging: SPIFFE_Federation.md §4.2 forbids merging bundles of
/// one trust domain, and picking one whole bundle keeps what a verifier trusts equal to exactly
/// what one configured source says. Configure the most authoritative source first (usually the
/// Workload API, then files, then federation). A conflict is a configuration error: it is logged
/// at error level whenever the merged view is rebuilt and reported by
/// [`CombinedBundles::conflicts`].
///
/// The merged set is cached and rebuilt only when some input snapshot changed (checked by
/// pointer), so [`BundleProvider::bundles`] is cheap on the verification path.
pub struct CombinedBundles {
    sources: Vec<Arc<dyn BundleProvider>>,
    cache: ArcSwapOption<Cache>,
}

struct Cache {
    inputs: Vec<Arc<BundleSet>>,
    merged: Arc<BundleSet>,
    conflicts: Vec<TrustDomainConflict>,
}

impl CombinedBundles {
    /// Combines `sources`, earlier ones taking precedence on a trust domain conflict.
    pub fn new(sources: Vec<Arc<dyn BundleProvider>>) -> Self {
        Self {
            sources,
            cache: ArcSwapOption::empty(),
        }
    }

    /// The conflicts in the current merged view (empty when every trust domain has one source).
    pub fn conflicts(&self) -> Vec<TrustDomainConflict> {
        self.cache_now().conflicts.clone()
    }

    fn cache_now(&self) -> Arc<Cache> {
        let inputs: Vec<Arc<BundleSet>> = self.sources.iter().map(|s| s.bundles()).collect();
        if let Some(cache) = self.cache.load_full()
            && cache.inputs.len() == inputs.len()
            && cache
                .inputs
                .iter()
                .zip(&inputs)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return cache;
        }
        let (merged, conflicts) = merge(&inputs);
        for conflict in &conflicts {
            tracing::error!(trust_domain = %conflict.trust_domain, kept = conflict.kept,
                dropped = conflict.dropped, "{conflict}");
        }
        let cache = Arc::new(Cache {
            inputs,
            merged: Arc::new(merged),
            conflicts,
        });
        // Racing rebuilds compute the same result from the same inputs; last store wins.
        self.cache.store(Some(Arc::clone(&cache)));
        cache
    }
}

fn merge(inputs: &[Arc<BundleSet>]) -> (BundleSet, Vec<TrustDomainConflict>) {
    let mut merged = BundleSet::new();
    let mut owner: Vec<(TrustDomain, usize)> = Vec::new();
    let mut conflicts = Vec::new();
    for (index, set) in inputs.iter().enumerate() {
        for (td, bundle) in set.iter() {
            if let Some((_, kept)) = owner.iter().find(|(t, _)| t == td) {
                conflicts.push(TrustDomainConflict {
                    trust_domain: td.clone(),
                    kept: *kept,
                    dropped: index,
                });
                continue;
            }
            owner.push((td.clone(), index));
            merged.replace(SpiffeBundle::clone(bundle));
        }
    }
    (merged, conflicts)
}

impl BundleProvider for CombinedBundles {
    fn bundles(&self) -> Arc<BundleSet> {
        Arc::clone(&self.cache_now().merged)
    }
}

impl fmt::Debug for CombinedBundles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CombinedBundles")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use arc_swap::ArcSwap;

    use super::*;
    use crate::testutil::TestCa;

    fn set_with(td: &str, ca: &TestCa) -> BundleSet {
        let mut set = BundleSet::new();
        set.insert(ca.spiffe_bundle(td)).unwrap();
        set
    }

    #[test]
    fn unions_disjoint_sources_and_follows_updates() {
        let (ca1, ca2, ca3) = (
            TestCa::new("a", None),
            TestCa::new("b", None),
            TestCa::new("c", None),
        );
        let a = Arc::new(ArcSwap::from_pointee(set_with("a.test", &ca1)));
        let b = Arc::new(ArcSwap::from_pointee(set_with("b.test", &ca2)));
        let combined = CombinedBundles::new(vec![a, b.clone()]);
        let first = combined.bundles();
        assert_eq!(first.len(), 2);
        assert!(combined.conflicts().is_empty());
        // Unchanged inputs: the cached snapshot is returned.
        assert!(Arc::ptr_eq(&first, &combined.bundles()));

        b.store(Arc::new(set_with("c.test", &ca3)));
        let second = combined.bundles();
        let tds: Vec<&str> = second.trust_domains().map(TrustDomain::as_str).collect();
        assert_eq!(tds, ["a.test", "c.test"]);
    }

    #[test]
    fn conflict_keeps_the_first_source_whole() {
        let (ca1, ca2) = (TestCa::new("first", None), TestCa::new("second", None));
        let first: Arc<dyn BundleProvider> = Arc::new(Arc::new(set_with("x.test", &ca1)));
        let second: Arc<dyn BundleProvider> = Arc::new(Arc::new(set_with("x.test", &ca2)));
        let combined = CombinedBundles::new(vec![first, second]);
        let set = combined.bundles();
        let td = TrustDomain::parse("x.test").unwrap();
        assert_eq!(set.x509(&td).unwrap().authorities(), &[ca1.der()]);
        assert_eq!(
            combined.conflicts(),
            vec![TrustDomainConflict {
                trust_domain: td,
                kept: 0,
                dropped: 1
            }]
        );
    }
}
