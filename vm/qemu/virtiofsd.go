package qemu

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vk-applevm/vk-applevm/vm"
)

// ShareCache is virtiofsd's cache mode for every share. Shares are pod
// emptyDirs that several VMs read and write at once, and a container
// expects to see another's write as soon as it returns, as it would on one
// kernel. cache=none makes every guest lookup, attribute read and file read
// go to the host (no guest page cache, zero attribute timeout); "auto"
// would let a guest trust cached attributes for 1 s and so read a stale
// size. The cost: no guest page cache for shared files, and on guest kernels
// before 6.6 no shared writable mmap of them (FOPEN_DIRECT_IO, fuse
// FUSE_DIRECT_IO_ALLOW_MMAP came in 6.6).
const ShareCache = "none"

// ShareSandbox is virtiofsd's sandbox: "namespace" puts it in new mount,
// pid and net namespaces with the shared directory as its root
// (pivot_root), which needs root (the shim runs as root on Linux: it also
// opens taps in the backend's network namespace) but no setuid helper.
// "chroot" is the weaker mode for when namespaces are unavailable.
const ShareSandbox = "namespace"

// ShareModcaps drops capabilities from virtiofsd's default set (chown,
// dac_override, fowner, fsetid, setgid, setuid, mknod, setfcap): a root
// container must not make device nodes on the host, nor keep the setuid
// and setgid bits that the kernel clears without CAP_FSETID.
const ShareModcaps = "-mknod:-fsetid"

// virtiofsdFD is virtiofsd's listening socket in the child: the first of
// ExtraFiles (os/exec numbers them after stdin, stdout and stderr).
const virtiofsdFD = 3

// VirtiofsdCandidates are where distributions install virtiofsd, tried in
// order when Options.Virtiofsd is empty: Debian 12's qemu-system-common
// ships QEMU's C virtiofsd (7.2) in /usr/lib/qemu; Fedora and later Debian
// put it in /usr/libexec.
var VirtiofsdCandidates = []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"}

// VirtiofsdHint says how to get virtiofsd on Debian.
const VirtiofsdHint = "apt-get install qemu-system-common"

// VirtiofsdArgs are the arguments of the virtiofsd serving share: it
// accepts QEMU's vhost-user connection on the listening socket the driver
// passes as fd 3 (created before virtiofsd starts, so QEMU never races
// virtiofsd's bind and listen). Read-only is not an option of QEMU 7.2's
// virtiofsd; the driver hands it a read-only view of the directory instead
// (see startVirtiofsd) and the guest mounts the share read-only too.
func VirtiofsdArgs(share vm.Share) []string {
	return []string{
		"--fd=" + strconv.Itoa(virtiofsdFD),
		"-o", "source=" + fuseOptEscape(filepath.Clean(share.HostPath)),
		"-o", "cache=" + ShareCache,
		"-o", "sandbox=" + ShareSandbox,
		"-o", "modcaps=" + ShareModcaps,
	}
}

// fuseOptEscape escapes a value for libfuse's option parser, which splits
// -o values on commas and takes a backslash as an escape (fuse_opt.c).
func fuseOptEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(s)
}

// virtiofsdLog is the log file of share i's virtiofsd in the private dir.
func virtiofsdLog(dir string, i int) string {
	return filepath.Join(dir, "virtiofsd"+strconv.Itoa(i)+".log")
}
