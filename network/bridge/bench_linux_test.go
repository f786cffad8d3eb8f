package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/vk-applevm/vk-applevm/network"
)

// benchNetwork is a network in a namespace of its own for a benchmark.
func benchNetwork(b *testing.B, slot int) *Network {
	b.Helper()
	cfg := Config{
		StateDir:  b.TempDir(),
		Subnet:    netip.MustParsePrefix(fmt.Sprintf("10.99.%d.0/24", slot)),
		LinkNet:   netip.MustParsePrefix(fmt.Sprintf("169.254.99.%d/30", 4*(slot%64))),
		DNS:       []netip.Addr{},
		NodeNetns: newNamespace(b, "bench"),
		Logger:    slog.New(slog.DiscardHandler),
	}
	b.Cleanup(func() { Cleanup(context.Background(), cfg) })
	n, err := New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// Attach of a new VM (lease + tap creation + bridge port) against Attach of
// an attached one (what a restarted node does for every running VM): run
// both with -bench . and compare ns/op side by side.
func BenchmarkAttachNewThenDetach(b *testing.B) {
	n := benchNetwork(b, 50)
	ctx := context.Background()
	for b.Loop() {
		if _, err := n.Attach(ctx, "benchvm", network.AttachOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := n.Detach(ctx, "benchvm"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAttachExisting(b *testing.B) {
	n := benchNetwork(b, 51)
	ctx := context.Background()
	if _, err := n.Attach(ctx, "benchvm", network.AttachOptions{}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := n.Attach(ctx, "benchvm", network.AttachOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetupExisting is New on a state root whose network exists (a
// node restart); BenchmarkSetupFresh builds and removes it each time.
func BenchmarkSetupExisting(b *testing.B) {
	n := benchNetwork(b, 52)
	for b.Loop() {
		again, err := New(context.Background(), n.cfg)
		if err != nil {
			b.Fatal(err)
		}
		again.Close(context.Background())
	}
}

func BenchmarkSetupFresh(b *testing.B) {
	n := benchNetwork(b, 53)
	cfg := n.cfg
	n.Teardown(context.Background())
	for b.Loop() {
		fresh, err := New(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := fresh.Teardown(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
