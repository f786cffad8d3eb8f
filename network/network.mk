# Make fragment for the VM network (network/). Include it from the top-level
# Makefile with:   include network/network.mk
#
# The bridge, tap and netns tests need root and, for outbound NAT, the nft
# binary (iptables is exercised too where installed); they create their own
# network namespaces and never change the host's.

.PHONY: deps-network test-network bench-network

deps-network:
	@command -v nft >/dev/null && command -v iptables >/dev/null || \
		(apt-get update && apt-get install -y nftables iptables)

test-network: deps-network
	go test -count=1 ./network/...

# Side-by-side costs: new vs existing Attach, fresh vs existing setup.
bench-network: deps-network
	go test -run '^$$' -bench . -benchtime=200x ./network/bridge/
