#!/bin/sh
# join.sh: add this machine to a kina cluster (Kubernetes in Apple's
# container: one control-plane VM on 192.168.64.0/24, API server on :6443),
# or any kubeadm-style cluster, as a vk-applevm node — the way a kubelet
# joins: a bootstrap token, TLS bootstrapping, the Node authorizer.
#
#   deploy/kina/join.sh [--kubeconfig ADMIN] [--node-name NAME] [--node-ip IP]
#                       [--dir DIR] [--root DIR] [--bin PATH] [--no-service]
#                       [--print-plist]
#
# Steps (each printed as it runs):
#   1. read the API server's address and CA from the admin kubeconfig
#   2. create a bootstrap token (a bootstrap.kubernetes.io/token Secret, 24 h)
#      and make sure kubeadm's TLS bootstrap bindings exist (deploy/rbac/bootstrap.yaml)
#   3. write DIR/bootstrap.kubeconfig: the API server, its CA, the token
#   4. pick the node IP: the address of the interface that reaches the API
#      server (on a Mac with kina: bridge100, 192.168.64.1)
#   5. write DIR/node.yaml (vk-applevm.io/v1alpha1 NodeConfig)
#   6. macOS: install and start the launchd agent io.vk-applevm.node
#      (Linux: see deploy/systemd; --no-service skips this step)
# Remove the node with deploy/kina/leave.sh.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
os=$(uname -s)

kubeconfig=${KUBECONFIG:-$HOME/.kube/config}
node_name=$(hostname -s 2>/dev/null | tr 'A-Z' 'a-z' || hostname | tr 'A-Z' 'a-z')
node_ip=
service=yes
print_plist=
bin=
if [ "$os" = Darwin ]; then
	dir="$HOME/Library/Application Support/vk-applevm"
	root="$dir"
	logdir="$HOME/Library/Logs/vk-applevm"
else
	dir=/etc/vk-applevm
	root=/var/lib/vk-applevm
	logdir=/var/log/vk-applevm
fi

die() { echo "join.sh: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

while [ $# -gt 0 ]; do
	case $1 in
	--kubeconfig) kubeconfig=$2; shift 2 ;;
	--node-name) node_name=$2; shift 2 ;;
	--node-ip) node_ip=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--root) root=$2; shift 2 ;;
	--bin) bin=$2; shift 2 ;;
	--log-dir) logdir=$2; shift 2 ;;
	--no-service) service=; shift ;;
	--print-plist) print_plist=yes; shift ;;
	-h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
if [ -z "$bin" ]; then
	bin=$(command -v vk-applevm 2>/dev/null || true)
	[ -n "$bin" ] || bin="$repo/bin/vk-applevm"
fi

# render_plist writes the launchd agent for this node to stdout.
render_plist() {
	# XML-escape, then escape for sed's replacement text.
	esc() { printf '%s' "$1" | sed -e 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g' -e 's/[&|\\]/\\&/g'; }
	sed -e "s|@BIN@|$(esc "$bin")|" -e "s|@CONFIG@|$(esc "$dir/node.yaml")|" \
		-e "s|@ROOT@|$(esc "$root")|" -e "s|@LOGDIR@|$(esc "$logdir")|g" \
		"$repo/deploy/launchd/io.vk-applevm.node.plist"
}
if [ -n "$print_plist" ]; then
	render_plist
	exit 0
fi

command -v kubectl >/dev/null || die "kubectl not found: install it (brew install kubectl)"
[ -f "$kubeconfig" ] || die "no admin kubeconfig at $kubeconfig: pass --kubeconfig (kina writes one for its cluster)"
k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

step "1. reading the API server from $kubeconfig"
server=$(k config view --raw --minify --flatten -o 'jsonpath={.clusters[0].cluster.server}')
ca=$(k config view --raw --minify --flatten -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}')
[ -n "$server" ] || die "the kubeconfig names no server"
[ -n "$ca" ] || die "the kubeconfig has no certificate-authority-data: the node must verify the API server"
k get --raw /readyz >/dev/null || die "the API server at $server does not answer: is the cluster up?"

step "2. creating a bootstrap token (24 h) and kubeadm's TLS bootstrap bindings"
rand() { LC_ALL=C tr -dc 'a-z0-9' </dev/urandom | dd bs=1 count="$1" 2>/dev/null; }
token_id=$(rand 6)
token_secret=$(rand 16)
expiration=$(date -u -d '+24 hours' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v+24H +%Y-%m-%dT%H:%M:%SZ)
k -n kube-system create secret generic "bootstrap-token-$token_id" \
	--type bootstrap.kubernetes.io/token \
	--from-literal=token-id="$token_id" --from-literal=token-secret="$token_secret" \
	--from-literal=expiration="$expiration" \
	--from-literal=usage-bootstrap-authentication=true --from-literal=usage-bootstrap-signing=true \
	--from-literal=auth-extra-groups=system:bootstrappers:kubeadm:default-node-token \
	--from-literal=description="vk-applevm node $node_name (deploy/kina/join.sh)" >/dev/null
k apply -f "$repo/deploy/rbac/bootstrap.yaml" >/dev/null
# Services and their endpoints for the node's pod network (kube-proxy's role).
k apply -f "$repo/deploy/rbac/node-proxier.yaml" >/dev/null

step "3. writing $dir/bootstrap.kubeconfig"
mkdir -p "$dir"
umask 077
cat >"$dir/bootstrap.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: kubelet-bootstrap
  user:
    token: $token_id.$token_secret
contexts:
- name: bootstrap
  context: {cluster: cluster, user: kubelet-bootstrap}
current-context: bootstrap
KUBECONFIG
echo "$token_id" >"$dir/bootstrap-token-id"
umask 022

step "4. picking the node IP"
if [ -z "$node_ip" ]; then
	host=${server#*://}
	host=${host%%/*}
	case $host in
	\[*) host=${host#\[}; host=${host%%\]*} ;;
	*) host=${host%:*} ;;
	esac
	case $host in
	*[!0-9.:]*) die "the API server is named $host, not addressed by IP: pass --node-ip" ;;
	esac
	if [ "$os" = Darwin ]; then
		iface=$(route -n get "$host" | awk '/interface:/ {print $2}')
		[ -n "$iface" ] || die "no route to $host"
		node_ip=$(ipconfig getifaddr "$iface" || true)
	else
		node_ip=$(ip -o route get "$host" | sed -n 's/.* src \([^ ]*\).*/\1/p')
	fi
	[ -n "$node_ip" ] || die "found no address on the interface that reaches $host: pass --node-ip"
fi
echo "    node IP $node_ip (the API server dials it on :10250)" >&2

step "5. writing $dir/node.yaml"
mkdir -p "$root"
cat >"$dir/node.yaml" <<CONFIG
# Written by deploy/kina/join.sh for $server.
apiVersion: vk-applevm.io/v1alpha1
kind: NodeConfig
root: $root
bootstrapKubeconfig: $dir/bootstrap.kubeconfig
kubeconfig: $root/kubelet.kubeconfig
nodeName: $node_name
nodeIP: $node_ip
CONFIG

if [ -n "$service" ] && [ "$os" = Darwin ]; then
	step "6. installing the launchd agent io.vk-applevm.node"
	[ -x "$bin" ] || die "no vk-applevm binary at $bin: run make, or pass --bin"
	mkdir -p "$HOME/Library/LaunchAgents" "$logdir"
	plist="$HOME/Library/LaunchAgents/io.vk-applevm.node.plist"
	render_plist >"$plist"
	plutil -lint "$plist" >/dev/null
	launchctl bootout "gui/$(id -u)/io.vk-applevm.node" 2>/dev/null || true
	launchctl bootstrap "gui/$(id -u)" "$plist"
	echo "    logs: $logdir/node.log" >&2
elif [ -n "$service" ]; then
	step "6. Linux: install deploy/systemd/vk-applevm-node.service (it reads /etc/vk-applevm/node.yaml)"
fi

cat >&2 <<NEXT

The node $node_name joins $server with the bootstrap token. Then:
  kubectl get node $node_name -o wide      # Ready within a minute
  kubectl get csr                          # approve its kubelet-serving CSR:
  kubectl certificate approve NAME         # (logs, exec and port-forward need it)
NEXT
