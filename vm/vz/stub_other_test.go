//go:build !darwin || no_vz

package vz

import (
	"context"
	"errors"
	"testing"

	"github.com/vk-applevm/vk-applevm/vm"
)

func TestDriverOffMacOSIsNotSupported(t *testing.T) {
	d := New(Options{})
	if d.Name() != "vz" {
		t.Errorf("Name %q", d.Name())
	}
	ctx := context.Background()
	if err := d.Check(ctx); !errors.Is(err, vm.ErrNotSupported) {
		t.Errorf("Check: %v, want ErrNotSupported", err)
	}
	m, err := d.Start(ctx, baseSpec(t), t.TempDir())
	if m != nil || !errors.Is(err, vm.ErrNotSupported) {
		t.Errorf("Start: %v, %v; want ErrNotSupported", m, err)
	}
	if _, err := d.Host(ctx); !errors.Is(err, vm.ErrNotSupported) {
		t.Errorf("Host: %v, want ErrNotSupported", err)
	}
}
