package network

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
)

// idPattern mirrors vm.Spec's id rule, so every VM id is accepted and
// nothing else (ids end up in device names and file contents).
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidateID reports whether id can name an endpoint.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: %q must be 1-32 characters of [a-z0-9-]", ErrInvalidID, id)
	}
	return nil
}

// MACFor derives the VM's MAC address from its id: the first six bytes of
// SHA-256("vkav-mac:" + id) with the locally-administered bit set and the
// multicast bit cleared (IEEE 802 first-octet bits 1 and 0), as vz and the
// Linux bridge require a unicast address that clashes with no vendor's.
// 46 random bits make a collision among a node's VMs negligible.
func MACFor(id string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("vkav-mac:" + id))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// tapPrefix starts every tap device name, so leftovers are recognisable.
const tapPrefix = "vkt"

// ifNameMax is IFNAMSIZ (16) minus the terminating NUL (linux/if.h).
const ifNameMax = 15

// TapName is the Linux tap device of VM id: "vkt" + the id when it fits in
// IFNAMSIZ (VM ids are 12 hex characters), else "vkt" + 12 hex characters of
// the id's SHA-256, so distinct long ids with a common prefix do not collide.
func TapName(id string) string {
	if len(tapPrefix)+len(id) <= ifNameMax {
		return tapPrefix + id
	}
	sum := sha256.Sum256([]byte(id))
	return tapPrefix + hex.EncodeToString(sum[:])[:ifNameMax-len(tapPrefix)]
}
