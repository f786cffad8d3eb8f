# Make fragment for the pod network (network/). Include it from the
# top-level Makefile with:   include network/network.mk
#
# The switch's tests plug fake VMs (gVisor stacks on real socket pairs) into
# a switch in the test process; the netns tests need root and create their
# own network namespaces, never changing the host's.

.PHONY: test-network

test-network:
	go test -count=1 ./network/...
