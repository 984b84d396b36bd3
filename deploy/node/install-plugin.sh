#!/bin/sh
# Installs svid-credential-provider on a node, before the kubelet is (re)started with the flags
# this prints. Run as root from node provisioning (image build, cloud-init, config management).
# Usage: install-plugin.sh PATH-TO-BINARY [node|sa|both]
set -eu

binary=${1:?usage: install-plugin.sh PATH-TO-BINARY [node|sa|both]}
mode=${2:-both}
here=$(cd "$(dirname "$0")" && pwd)
BIN_DIR=${BIN_DIR:-/usr/local/libexec/kubelet-credential-providers}
CONFIG_DIR=${CONFIG_DIR:-/etc/svid-credential-provider}
KUBELET_CONFIG_DIR=${KUBELET_CONFIG_DIR:-/etc/kubernetes/image-credential-providers}

case "$mode" in
node) source=credential-provider-config.yaml ;;
sa) source=credential-provider-config-sa.yaml ;;
both) source=credential-provider-config-both.yaml ;;
*)
    echo "install-plugin.sh: mode must be node, sa or both" >&2
    exit 2
    ;;
esac

install -d -m 0755 "$BIN_DIR" "$CONFIG_DIR" "$KUBELET_CONFIG_DIR"
# Copy then rename: a kubelet exec never sees a half-written binary.
install -m 0755 "$binary" "$BIN_DIR/.svid-credential-provider.new"
mv -f "$BIN_DIR/.svid-credential-provider.new" "$BIN_DIR/svid-credential-provider"
# The service-account mode provider name; a symbolic link keeps /proc/PID/exe (SPIRE's
# unix:path selector) the real binary's path.
ln -sfn svid-credential-provider "$BIN_DIR/svid-credential-provider-sa"
install -m 0644 "$here/config/config.toml" "$CONFIG_DIR/config.toml"
install -m 0644 "$here/kubelet/$source" "$KUBELET_CONFIG_DIR/svid-credential-provider.yaml"

"$BIN_DIR/svid-credential-provider" --version
"$BIN_DIR/svid-credential-provider" validate --config "$CONFIG_DIR/config.toml" \
    --kubelet-config "$KUBELET_CONFIG_DIR/svid-credential-provider.yaml"
echo "restart the kubelet with:"
echo "  --image-credential-provider-bin-dir=$BIN_DIR"
echo "  --image-credential-provider-config=$KUBELET_CONFIG_DIR/svid-credential-provider.yaml"
