package network

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// Files of an Allocator inside its directory (<state root>/network).
const (
	leasesFile = "leases.json"
	lockFile   = "leases.lock"
)

// ErrSubnetChanged is returned when the leases on disk belong to another
// subnet than the one configured and some are still held.
var ErrSubnetChanged = errors.New("leases on disk are for another subnet")

// Allocator hands out the addresses of one IPv4 subnet to ids and keeps the
// leases in a JSON file guarded by an flock, so the node and the CLI sharing
// a state root agree, and a restarted node finds every VM's address again.
// The subnet's first host address is the gateway and never leased.
type Allocator struct {
	dir    string
	subnet netip.Prefix
}

// NewAllocator returns the allocator for subnet with its files in dir,
// which it creates.
func NewAllocator(dir string, subnet netip.Prefix) (*Allocator, error) {
	if err := ValidateSubnet(subnet); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create allocator directory %s: %w", dir, err)
	}
	return &Allocator{dir: dir, subnet: subnet}, nil
}

// ValidateSubnet checks that subnet is a masked IPv4 prefix with room for
// the gateway and at least one VM (/30 or larger).
func ValidateSubnet(subnet netip.Prefix) error {
	switch {
	case !subnet.IsValid() || !subnet.Addr().Is4():
		return fmt.Errorf("subnet %v: must be an IPv4 prefix", subnet)
	case subnet.Masked() != subnet:
		return fmt.Errorf("subnet %v: host bits are set (did you mean %v?)", subnet, subnet.Masked())
	case subnet.Bits() > 30 || subnet.Bits() < 8:
		return fmt.Errorf("subnet %v: prefix length must be 8..30", subnet)
	}
	return nil
}

// Gateway is the first host address of subnet, which the host side owns.
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }

// broadcast is the last address of subnet.
func broadcast(subnet netip.Prefix) netip.Addr {
	a := subnet.Masked().Addr().As4()
	host := uint32(1)<<(32-subnet.Bits()) - 1
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])|host)
	return netip.AddrFrom4(a)
}

// Subnet is the allocator's subnet.
func (a *Allocator) Subnet() netip.Prefix { return a.subnet }

// Lock takes the allocator's cross-process lock for work that must not
// interleave with allocations (setting up or tearing down the network).
func (a *Allocator) Lock(ctx context.Context) (unlock func() error, err error) {
	return LockFile(ctx, filepath.Join(a.dir, lockFile))
}

// Update runs fn on the current leases under the lock and writes them back
// if fn changed them and returned nil; an error from fn discards its changes.
func (a *Allocator) Update(ctx context.Context, fn func(*Leases) error) (err error) {
	unlock, err := a.Lock(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	l, err := a.load()
	if err != nil {
		return err
	}
	if err := fn(l); err != nil {
		return err
	}
	if !l.changed {
		return nil
	}
	return a.save(l)
}

// Acquire returns id's address, leasing a free one if id has none.
func (a *Allocator) Acquire(ctx context.Context, id string) (addr netip.Addr, err error) {
	err = a.Update(ctx, func(l *Leases) error {
		addr, err = l.Acquire(id)
		return err
	})
	return addr, err
}

// Release frees id's address; releasing an unknown id does nothing.
func (a *Allocator) Release(ctx context.Context, id string) error {
	return a.Update(ctx, func(l *Leases) error {
		l.Release(id)
		return nil
	})
}

// Leases returns a copy of every lease.
func (a *Allocator) Leases(ctx context.Context) (leases map[string]netip.Addr, err error) {
	err = a.Update(ctx, func(l *Leases) error {
		leases = l.All()
		return nil
	})
	return leases, err
}

// Reset forgets every lease. The caller holds Lock. The lock file stays:
// unlinking a file others may be waiting to flock would let two holders in.
func (a *Allocator) Reset() error {
	path := filepath.Join(a.dir, leasesFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove leases %s: %w", path, err)
	}
	return nil
}

// leaseFile is the JSON on disk.
type leaseFile struct {
	Subnet netip.Prefix `json:"subnet"`
	// Last is the most recently leased address; the next lease starts
	// after it, so a freed address is not reused at once and stale ARP
	// entries or connections do not reach a new VM (the rotation
	// Kubernetes' host-local IPAM uses).
	Last   netip.Addr            `json:"last,omitzero"`
	Leases map[string]netip.Addr `json:"leases"`
}

func (a *Allocator) load() (*Leases, error) {
	path := filepath.Join(a.dir, leasesFile)
	l := &Leases{file: leaseFile{Subnet: a.subnet, Leases: map[string]netip.Addr{}}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read leases %s: %w", path, err)
	}
	var f leaseFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse leases %s: %w", path, err)
	}
	if f.Subnet != a.subnet {
		if len(f.Leases) > 0 {
			return nil, fmt.Errorf("%w: %s holds %d leases in %v, configured subnet is %v (detach the VMs or keep the subnet)",
				ErrSubnetChanged, path, len(f.Leases), f.Subnet, a.subnet)
		}
		return l, nil
	}
	if f.Leases == nil {
		f.Leases = map[string]netip.Addr{}
	}
	l.file = f
	return l, nil
}

func (a *Allocator) save(l *Leases) error {
	data, err := json.MarshalIndent(l.file, "", "  ")
	if err != nil {
		return fmt.Errorf("encode leases: %w", err)
	}
	path := filepath.Join(a.dir, leasesFile)
	// Written to a temp file, fsynced and renamed: after a crash the file
	// is the old or the new version, never a truncated one.
	if err := renameio.WriteFile(path, append(data, '\n'), 0o600, renameio.WithTempDir(a.dir)); err != nil {
		return fmt.Errorf("replace leases %s: %w", path, err)
	}
	return nil
}

// Leases is the allocator's table while Update holds the lock.
type Leases struct {
	file    leaseFile
	changed bool
}

// Get returns id's address if it has one.
func (l *Leases) Get(id string) (netip.Addr, bool) {
	addr, ok := l.file.Leases[id]
	return addr, ok
}

// All returns a copy of every lease.
func (l *Leases) All() map[string]netip.Addr { return maps.Clone(l.file.Leases) }

// Acquire returns id's address, leasing the next free one after the last
// lease (wrapping around) if id has none.
func (l *Leases) Acquire(id string) (netip.Addr, error) {
	if err := ValidateID(id); err != nil {
		return netip.Addr{}, err
	}
	if addr, ok := l.file.Leases[id]; ok {
		return addr, nil
	}
	subnet := l.file.Subnet
	first, last := Gateway(subnet).Next(), broadcast(subnet).Prev()
	used := make(map[netip.Addr]bool, len(l.file.Leases))
	for _, addr := range l.file.Leases {
		used[addr] = true
	}
	start := first
	if l.file.Last.IsValid() && subnet.Contains(l.file.Last) && l.file.Last.Less(last) {
		start = l.file.Last.Next()
	}
	addr := start
	for {
		if !used[addr] {
			l.file.Leases[id] = addr
			l.file.Last = addr
			l.changed = true
			return addr, nil
		}
		if addr = addr.Next(); last.Less(addr) {
			addr = first
		}
		if addr == start {
			return netip.Addr{}, fmt.Errorf("lease address for %s: %w %v (%d leases)", id, ErrExhausted, subnet, len(l.file.Leases))
		}
	}
}

// Release frees id's address and reports whether it had one.
func (l *Leases) Release(id string) bool {
	if _, ok := l.file.Leases[id]; !ok {
		return false
	}
	delete(l.file.Leases, id)
	l.changed = true
	return true
}
