// Package ext4test checks ext4 images in tests with the reference tools:
// e2fsck for consistency and debugfs to read back every inode, without
// mounting anything. e2fsprogs must be installed; a missing tool fails the
// test with the command that installs it.
package ext4test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tool returns the path of an e2fsprogs tool, failing t if it is missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/opt/homebrew/opt/e2fsprogs/sbin", "/usr/local/opt/e2fsprogs/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found: install e2fsprogs (apt-get install e2fsprogs; macOS: brew install e2fsprogs)", name)
	return ""
}

// fsckSummary is e2fsck's last line, "<label or path>: 12/64 files (...".
var fsckSummary = regexp.MustCompile(`: \d+/\d+ files \(\d+\.\d+% non-contiguous\), \d+/\d+ blocks$`)

// Fsck runs `e2fsck -fn` on img and fails t unless it reports a clean
// filesystem: exit status 0 and no problem lines.
func Fsck(t testing.TB, img string) {
	t.Helper()
	out, err := exec.Command(Tool(t, "e2fsck"), "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, "e2fsck ") || strings.HasPrefix(line, "Pass ") ||
			fsckSummary.MatchString(line) {
			continue
		}
		t.Fatalf("e2fsck -fn %s reported: %q\n%s", img, line, out)
	}
}

// Debugfs runs debugfs commands (one per element) on img read-only and
// returns each command's output.
func Debugfs(t testing.TB, img string, cmds []string) []string {
	t.Helper()
	if len(cmds) == 0 {
		return nil
	}
	f, err := os.CreateTemp(t.TempDir(), "debugfs-cmds")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		fmt.Fprintln(f, c)
	}
	f.Close()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(Tool(t, "debugfs"), "-f", f.Name(), img)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs %s: %v\n%s", img, err, stderr.String())
	}
	// debugfs echoes each command as "debugfs: <cmd>" before its output.
	outs := make([]string, 0, len(cmds))
	var cur *strings.Builder
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "debugfs: ") && len(outs) < len(cmds) && line[len("debugfs: "):] == cmds[len(outs)] {
			outs = append(outs, "")
			cur = &strings.Builder{}
			continue
		}
		if cur != nil {
			cur.WriteString(line)
			cur.WriteByte('\n')
			outs[len(outs)-1] = cur.String()
		}
	}
	if len(outs) != len(cmds) {
		t.Fatalf("debugfs %s: got output for %d of %d commands\n%s", img, len(outs), len(cmds), stderr.String())
	}
	for i, o := range outs {
		if strings.Contains(o, "Couldn't") || strings.Contains(o, "not found") {
			t.Fatalf("debugfs %q: %s", cmds[i], o)
		}
	}
	return outs
}

// Node is one name of an image as debugfs reads it back.
type Node struct {
	Path         string
	Ino          uint64
	Mode         uint32 // st_mode: type bits and permissions
	UID, GID     uint32
	Size         int64
	Links        int
	Target       string // symlinks
	Major, Minor uint32
	// Xattrs maps names to value sizes as listed by debugfs.
	Xattrs                      map[string]int
	Atime, Mtime, Ctime, Crtime time.Time
	Extents                     int  // leaf extents, for regular files and directories
	Depth                       int  // extent tree depth
	XattrBlock                  bool // "File ACL" is set
}

// File type bits of Node.Mode.
const (
	ModeType    = 0o170000
	ModeDir     = 0o040000
	ModeRegular = 0o100000
	ModeSymlink = 0o120000
	ModeChar    = 0o020000
	ModeBlock   = 0o060000
	ModeFifo    = 0o010000
	ModeSocket  = 0o140000
)

var typeBits = map[string]uint32{
	"directory": ModeDir, "regular": ModeRegular, "symlink": ModeSymlink, "character": ModeChar,
	"block": ModeBlock, "FIFO": ModeFifo, "socket": ModeSocket,
}

// Inspect reads every name of img, keyed by absolute path ("/" is the
// root), with each inode's metadata.
func Inspect(t testing.TB, img string) map[string]*Node {
	t.Helper()
	tree := map[string]*Node{"/": {Path: "/", Ino: 2, Mode: ModeDir}}
	level := []*Node{tree["/"]}
	for len(level) > 0 {
		cmds := make([]string, len(level))
		for i, d := range level {
			cmds[i] = fmt.Sprintf("ls -p <%d>", d.Ino)
		}
		outs := Debugfs(t, img, cmds)
		var next []*Node
		for i, d := range level {
			for _, line := range strings.Split(outs[i], "\n") {
				n, ok := parseLsLine(t, line)
				// Unused records (inode 0) fill empty directory blocks.
				if !ok || n.Ino == 0 || n.Path == "." || n.Path == ".." {
					continue
				}
				n.Path = strings.TrimSuffix(d.Path, "/") + "/" + n.Path
				tree[n.Path] = n
				if n.Mode&ModeType == ModeDir {
					next = append(next, n)
				}
			}
		}
		level = next
	}
	var nodes []*Node
	var cmds []string
	for _, n := range tree {
		nodes = append(nodes, n)
		cmds = append(cmds, fmt.Sprintf("stat <%d>", n.Ino))
	}
	for i, out := range Debugfs(t, img, cmds) {
		parseStat(t, nodes[i], out)
	}
	return tree
}

// parseLsLine reads `ls -p` output: /ino/mode/uid/gid/name/size/.
func parseLsLine(t testing.TB, line string) (*Node, bool) {
	if !strings.HasPrefix(line, "/") {
		return nil, false
	}
	f := strings.Split(line, "/")
	if len(f) != 8 {
		t.Fatalf("debugfs ls -p line %q", line)
	}
	ino, _ := strconv.ParseUint(f[1], 10, 32)
	mode, _ := strconv.ParseUint(f[2], 8, 32)
	uid, _ := strconv.ParseUint(f[3], 10, 32)
	gid, _ := strconv.ParseUint(f[4], 10, 32)
	size, _ := strconv.ParseInt(f[6], 10, 64)
	return &Node{Path: f[5], Ino: ino, Mode: uint32(mode), UID: uint32(uid), GID: uint32(gid), Size: size}, true
}

func parseStat(t testing.TB, n *Node, out string) {
	lines := strings.Split(out, "\n")
	inXattrs := false
	for i, line := range lines {
		fields := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Inode: "):
			// "Inode: 2   Type: directory    Mode:  0755   Flags: 0x80000"
			for j := 0; j+1 < len(fields); j++ {
				switch fields[j] {
				case "Type:":
					n.Mode = n.Mode&^ModeType | typeBits[fields[j+1]]
				case "Mode:":
					perm, _ := strconv.ParseUint(fields[j+1], 8, 32)
					n.Mode = n.Mode&ModeType | uint32(perm)
				}
			}
		case strings.HasPrefix(line, "User: "):
			// "User: 0 Group: 0 Project: 0 Size: 3"
			for j := 0; j+1 < len(fields); j++ {
				// debugfs prints ids as signed 32-bit numbers.
				v, _ := strconv.ParseInt(fields[j+1], 10, 64)
				switch fields[j] {
				case "User:":
					n.UID = uint32(v)
				case "Group:":
					n.GID = uint32(v)
				case "Size:":
					n.Size = int64(v)
				}
			}
		case strings.HasPrefix(line, "Links: "):
			n.Links, _ = strconv.Atoi(fields[1])
		case strings.HasPrefix(line, "File ACL: "):
			n.XattrBlock = fields[2] != "0"
		case strings.HasPrefix(strings.TrimSpace(line), "ctime: "):
			n.Ctime = parseTime(t, fields[1])
		case strings.HasPrefix(strings.TrimSpace(line), "atime: "):
			n.Atime = parseTime(t, fields[1])
		case strings.HasPrefix(strings.TrimSpace(line), "mtime: "):
			n.Mtime = parseTime(t, fields[1])
		case strings.HasPrefix(line, "crtime: "):
			n.Crtime = parseTime(t, fields[1])
		case strings.HasPrefix(line, "Fast link dest: "):
			n.Target, _ = strconv.Unquote(strings.TrimPrefix(line, "Fast link dest: "))
		case strings.Contains(line, "Device major/minor number: "):
			// "Device major/minor number: 01:03 (hex 01:03)"
			mm := strings.Fields(line[strings.Index(line, "number: ")+len("number: "):])[0]
			a, b, _ := strings.Cut(mm, ":")
			ma, _ := strconv.ParseUint(a, 10, 32)
			mi, _ := strconv.ParseUint(b, 10, 32)
			n.Major, n.Minor = uint32(ma), uint32(mi)
		case line == "Extended attributes:":
			inXattrs = true
			n.Xattrs = map[string]int{}
			continue
		case line == "EXTENTS:" && i+1 < len(lines):
			// "(0-3):100-103, (ETB0):99, (4):200" — count leaves, note
			// tree blocks.
			for _, part := range strings.Split(lines[i+1], ", ") {
				if strings.HasPrefix(part, "(ETB") {
					lvl, _ := strconv.Atoi(part[4:strings.Index(part, ")")])
					n.Depth = max(n.Depth, lvl+1)
				} else if part != "" {
					n.Extents++
				}
			}
		}
		if inXattrs {
			if !strings.HasPrefix(line, "  ") {
				inXattrs = false
				continue
			}
			// "  user.x (3) = ..." or "  user.big (300)"
			name, rest, _ := strings.Cut(strings.TrimSpace(line), " (")
			size, _ := strconv.Atoi(rest[:strings.Index(rest, ")")])
			n.Xattrs[name] = size
		}
	}
}

// parseTime decodes debugfs's "0x<seconds>:<extra>" with the epoch bits.
func parseTime(t testing.TB, s string) time.Time {
	lo, extra, ok := strings.Cut(s, ":")
	if !ok {
		lo, extra = s, "0"
	}
	l, err1 := strconv.ParseUint(strings.TrimPrefix(lo, "0x"), 16, 32)
	e, err2 := strconv.ParseUint(extra, 16, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("debugfs time %q", s)
	}
	sec := int64(int32(uint32(l))) + int64(e&3)<<32
	return time.Unix(sec, int64(e>>2))
}

// ReadFiles returns the contents of the regular files and slow symlinks
// at inos, dumped by debugfs.
func ReadFiles(t testing.TB, img string, inos []uint64) map[uint64][]byte {
	t.Helper()
	dir := t.TempDir()
	cmds := make([]string, len(inos))
	for i, ino := range inos {
		cmds[i] = fmt.Sprintf("dump <%d> %s", ino, filepath.Join(dir, strconv.FormatUint(ino, 10)))
	}
	Debugfs(t, img, cmds)
	out := map[uint64][]byte{}
	for _, ino := range inos {
		b, err := os.ReadFile(filepath.Join(dir, strconv.FormatUint(ino, 10)))
		if err != nil {
			t.Fatalf("read dump of inode %d: %v", ino, err)
		}
		out[ino] = b
	}
	return out
}

// Xattr returns one xattr's value as debugfs reads it.
func Xattr(t testing.TB, img string, ino uint64, name string) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xattr")
	Debugfs(t, img, []string{fmt.Sprintf("ea_get -f %s <%d> %s", p, ino, name)})
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read xattr %s of inode %d: %v", name, ino, err)
	}
	return b
}

// Superblock returns debugfs's `stats -h` fields ("Filesystem features",
// "Block count", ...).
func Superblock(t testing.TB, img string) map[string]string {
	t.Helper()
	out := Debugfs(t, img, []string{"stats -h"})[0]
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}
