package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FinitModule loads one kernel module file with finit_module(2). Module
// files in the initrd are plain .ko (the guest bundle decompresses them).
func FinitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
		if err == unix.EEXIST {
			return ErrModuleLoaded
		}
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// ReadModuleList reads and parses a modules.list file; a missing file is
// an empty list (a kernel with everything built in).
func ReadModuleList(path string) ([]string, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open module list: %w", err)
	}
	defer f.Close()
	return ParseModuleList(f)
}

// SetPageReportingOrder writes the order the initrd's file holds to the
// kernel's page_reporting_order parameter, so that free blocks smaller than
// the default 2 MiB go back to the host too (guest.PageReportingOrder
// says why). An initrd without the file, or a kernel without free page
// reporting, leaves things as they are.
func SetPageReportingOrder(file, param string) error {
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the page reporting order: %w", err)
	}
	order := strings.TrimSpace(string(data))
	if _, err := strconv.ParseUint(order, 10, 8); err != nil {
		return fmt.Errorf("page reporting order %q in %s: %w", order, file, err)
	}
	if err := os.WriteFile(param, []byte(order), 0); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("set the page reporting order to %s: %w", order, err)
	}
	return nil
}
