package guest

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/vk-applevm/vk-applevm/agent/initrdpath"
	"github.com/vk-applevm/vk-applevm/guest/initrd"
)

// PageReportingOrder is the smallest free block, as a power of two of
// pages, that the guest kernel reports to the host as free (free page
// reporting, QEMU's virtio-balloon; nothing reports under vz). The
// kernel's default is the pageblock order, 9 (2 MiB on x86): freed memory
// scattered in smaller pieces (what boot frees, a process's exit) stays
// on the host. Measured side by side in hack/bench's memory benchmark
// (an initrd that says 9 next to this one): see docs/decisions.md.
const PageReportingOrder = 0

// WriteInitrd writes an uncompressed newc initrd to dst: init as /init,
// dev/console, every module in order as /lib/vkav/modules/<name>.ko and
// /lib/vkav/modules.list naming them (relative to initrdpath.ModulesDir)
// in load order.
//
// The archive is not compressed: the kernel then only copies it, which
// under TCG is cheaper than inflating it, and the agent binary dominates
// its size either way.
func WriteInitrd(dst, init string, order []Module) error {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("write initrd: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := initrd.NewWriter(bw)
	err = writeEntries(w, init, order)
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("write initrd %s: %w", dst, err)
	}
	return nil
}

func writeEntries(w *initrd.Writer, init string, order []Module) error {
	// The kernel opens /dev/console for init's stdio before init runs; its
	// built-in initramfs has it too, this keeps the archive self-contained.
	if err := w.Dir("dev", 0o755); err != nil {
		return err
	}
	if err := w.CharDevice("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "run", "tmp"} {
		if err := w.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := w.FileFromPath("init", 0o755, init); err != nil {
		return err
	}
	if err := w.Dir(initrdpath.ModulesDir, 0o755); err != nil {
		return err
	}
	var list strings.Builder
	for _, m := range order {
		name := m.Name + ".ko"
		if err := w.FileFromPath(path.Join(initrdpath.ModulesDir, name), 0o644, m.Path); err != nil {
			return err
		}
		list.WriteString(name + "\n")
	}
	if err := w.File(initrdpath.ModulesList, 0o644, int64(list.Len()), strings.NewReader(list.String())); err != nil {
		return err
	}
	reporting := strconv.Itoa(PageReportingOrder) + "\n"
	return w.File(initrdpath.PageReportingOrderFile, 0o644, int64(len(reporting)), strings.NewReader(reporting))
}
