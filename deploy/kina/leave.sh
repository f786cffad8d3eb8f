#!/bin/sh
# leave.sh: remove this machine's vk-applevm node from the cluster it
# joined with join.sh: stop the service, delete its VMs, the Node object
# and the bootstrap token, and forget its credentials.
#
#   deploy/kina/leave.sh [--kubeconfig ADMIN] [--node-name NAME] [--dir DIR] [--root DIR] [--bin PATH]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
os=$(uname -s)
kubeconfig=${KUBECONFIG:-$HOME/.kube/config}
node_name=$(hostname -s 2>/dev/null | tr 'A-Z' 'a-z' || hostname | tr 'A-Z' 'a-z')
bin=
if [ "$os" = Darwin ]; then
	dir="$HOME/Library/Application Support/vk-applevm"
	root="$dir"
else
	dir=/etc/vk-applevm
	root=/var/lib/vk-applevm
fi
while [ $# -gt 0 ]; do
	case $1 in
	--kubeconfig) kubeconfig=$2; shift 2 ;;
	--node-name) node_name=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--root) root=$2; shift 2 ;;
	--bin) bin=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "leave.sh: unknown argument $1" >&2; exit 1 ;;
	esac
done
[ -n "$bin" ] || bin=$(command -v vk-applevm 2>/dev/null || echo "$repo/bin/vk-applevm")
k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

if [ "$os" = Darwin ]; then
	echo "==> stopping the launchd agent" >&2
	launchctl bootout "gui/$(id -u)/io.vk-applevm.node" 2>/dev/null || true
	rm -f "$HOME/Library/LaunchAgents/io.vk-applevm.node.plist"
elif command -v systemctl >/dev/null && systemctl list-unit-files vk-applevm-node.service >/dev/null 2>&1; then
	echo "==> stopping vk-applevm-node.service" >&2
	systemctl disable --now vk-applevm-node.service || true
fi
echo "==> deleting the node's VMs" >&2
"$bin" --root "$root" cleanup || true
echo "==> deleting Node $node_name and the bootstrap token" >&2
k delete node "$node_name" --ignore-not-found
if [ -f "$dir/bootstrap-token-id" ]; then
	k -n kube-system delete secret "bootstrap-token-$(cat "$dir/bootstrap-token-id")" --ignore-not-found
fi
rm -f "$dir/bootstrap.kubeconfig" "$dir/bootstrap-token-id" "$dir/node.yaml" "$root/kubelet.kubeconfig"
rm -rf "$root/pki"
echo "==> done: approved CSRs expire on their own (kubectl delete csr to tidy up now)" >&2
