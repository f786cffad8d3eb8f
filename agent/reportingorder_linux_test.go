package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSetPageReportingOrderWritesTheInitrdsOrder(t *testing.T) {
	dir := t.TempDir()
	file, param := filepath.Join(dir, "order"), filepath.Join(dir, "page_reporting_order")
	if err := os.WriteFile(param, []byte("9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// No file in the initrd: the kernel's order stays.
	if err := SetPageReportingOrder(file, param); err != nil {
		t.Fatalf("without the file: %v", err)
	}
	if got, _ := os.ReadFile(param); string(got) != "9\n" {
		t.Errorf("without the file the parameter became %q", got)
	}
	if err := os.WriteFile(file, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SetPageReportingOrder(file, param); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(param); string(got) != "0" {
		t.Errorf("parameter = %q, want 0", got)
	}
	// A kernel without free page reporting has no parameter.
	if err := SetPageReportingOrder(file, filepath.Join(dir, "absent", "page_reporting_order")); err != nil {
		t.Errorf("without the parameter: %v", err)
	}
	if err := os.WriteFile(file, []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SetPageReportingOrder(file, param); err == nil {
		t.Error("a malformed order was accepted")
	}
}
