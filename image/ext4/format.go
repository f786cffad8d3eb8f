package ext4

import (
	"encoding/binary"
	"slices"
	"time"
)

// On-disk constants; the values and names follow the kernel's fs/ext4/ext4.h.
const (
	blockSize      = 4096
	blockShift     = 12
	blocksPerGroup = 8 * blockSize // one bitmap block describes one group
	inodeSize      = 256
	inodesPerBlock = blockSize / inodeSize
	descSize       = 32 // group descriptor size without the 64bit feature
	descsPerBlock  = blockSize / descSize
	extraIsize     = 32 // i_extra_isize: up to and including i_projid
	goodOldInode   = 128
	firstIno       = 11 // s_first_ino: inodes 1-10 are reserved
	rootIno        = 2
	maxLinks       = 65000 // EXT4_LINK_MAX
	maxNameLen     = 255
	maxBlocks      = 1 << 32 // block numbers are 32 bits without the 64bit feature
	maxExtentLen   = 32768   // EXT_INIT_MAX_LEN
	inodeBlockLen  = 60      // sizeof(i_block)
	maxSymlinkLen  = blockSize - 1
	superOffset    = 1024 // the primary superblock's byte offset
	superMagic     = 0xEF53
	extentMagic    = 0xF30A
	xattrMagic     = 0xEA020000
	// Extent entries in a tree block: (4096 - 12-byte header) / 12.
	extentsPerBlock = (blockSize - 12) / 12
	extentsInInode  = (inodeBlockLen - 12) / 12
)

// Feature flags (s_feature_compat, _incompat, _ro_compat).
const (
	compatExtAttr  = 0x0008
	compatDirIndex = 0x0020

	incompatFiletype = 0x0002
	incompatExtents  = 0x0040
	incompatFlexBG   = 0x0200

	roCompatSparseSuper = 0x0001
	roCompatLargeFile   = 0x0002
	roCompatHugeFile    = 0x0008
	roCompatDirNlink    = 0x0020
	roCompatExtraIsize  = 0x0040
	roCompatReadOnly    = 0x1000
)

// Inode fields.
const (
	modeFifo    = 0x1000
	modeCharDev = 0x2000
	modeDir     = 0x4000
	modeBlkDev  = 0x6000
	modeRegular = 0x8000
	modeSymlink = 0xA000
	modeSocket  = 0xC000

	flagExtents = 0x80000 // EXT4_EXTENTS_FL
)

// Directory entry file types (EXT4_FT_*).
const (
	ftRegular = 1
	ftDir     = 2
	ftCharDev = 3
	ftBlkDev  = 4
	ftFifo    = 5
	ftSocket  = 6
	ftSymlink = 7
)

var le = binary.LittleEndian

// timestamp is a time as ext4 stores it: 32 bits of seconds in the classic
// field, and in the extra field two epoch bits (extending the range to
// 2446) and 30 bits of nanoseconds.
type timestamp struct {
	lo    uint32
	extra uint32
}

// Limits of the 34-bit signed seconds encoding.
const (
	minTime = -1 << 31
	maxTime = 1<<34 - 1<<31 - 1
)

func encodeTime(t time.Time) timestamp {
	sec := t.Unix()
	nsec := uint32(t.Nanosecond())
	if sec < minTime {
		sec, nsec = minTime, 0
	}
	if sec > maxTime {
		sec, nsec = maxTime, 999999999
	}
	lo := uint32(sec)
	// The kernel decodes (int32)lo + epoch<<32 (ext4_decode_extra_time).
	epoch := uint32((sec-int64(int32(lo)))>>32) & 3
	return timestamp{lo: lo, extra: nsec<<2 | epoch}
}

// hasSuper reports whether group g holds a superblock backup under
// sparse_super: groups 0 and 1 and the powers of 3, 5 and 7.
func hasSuper(g uint64) bool {
	if g <= 1 {
		return true
	}
	for _, base := range [...]uint64{3, 5, 7} {
		p := base
		for p < g {
			p *= base
		}
		if p == g {
			return true
		}
	}
	return false
}

// superGroups lists every group that holds a superblock copy below
// maxBlocks/blocksPerGroup, ascending.
var superGroups = func() []uint64 {
	gs := []uint64{0, 1}
	for _, base := range [...]uint64{3, 5, 7} {
		for p := base; p < maxBlocks/blocksPerGroup; p *= base {
			gs = append(gs, p)
		}
	}
	slices.Sort(gs)
	return gs
}()

func gdtBlocks(groups uint64) uint64 { return (groups + descsPerBlock - 1) / descsPerBlock }

func divRoundUp(a, b uint64) uint64 { return (a + b - 1) / b }

func align4(n int) int { return (n + 3) &^ 3 }
