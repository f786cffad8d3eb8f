//go:build !linux

package dhcp

import (
	"context"
	"errors"
	"net/netip"
)

// ErrNotSupported is returned by a Client's exchanges outside Linux: the
// client runs in the guest; the protocol code builds everywhere so that
// its tests run on the Mac too.
var ErrNotSupported = errors.New("dhcp client sockets are Linux-only")

type systemTransports struct{}

func (systemTransports) unconfigured(context.Context, *Config) (transport, error) {
	return nil, ErrNotSupported
}

func (systemTransports) configured(context.Context, *Config, netip.Addr) (transport, error) {
	return nil, ErrNotSupported
}
