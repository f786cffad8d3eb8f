package vz

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckCPURefusesIntelMacs(t *testing.T) {
	err := checkCPU(false)
	if !errors.Is(err, ErrIntelMac) || !strings.Contains(err.Error(), "Apple silicon") {
		t.Fatalf("Intel Mac: %v", err)
	}
	if err := checkCPU(true); err != nil {
		t.Fatalf("Apple silicon: %v", err)
	}
}

func TestEntitlementErrorByName(t *testing.T) {
	for msg, want := range map[string]bool{
		"The process doesn’t have the “com.apple.security.virtualization” entitlement.":    true,
		"Der Prozess hat nicht die Berechtigung „com.apple.security.virtualization“.":      true,
		"Virtualization is not available on this hardware.":                                false,
		"Invalid virtual machine configuration. The storage device attachment is invalid.": false,
	} {
		if got := isEntitlementError(msg); got != want {
			t.Errorf("isEntitlementError(%q) = %v, want %v", msg, got, want)
		}
	}
}
