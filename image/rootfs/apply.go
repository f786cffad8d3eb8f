package rootfs

import (
	"archive/tar"
	"fmt"
	"io"
	"strings"

	"github.com/vk-applevm/vk-applevm/image/ext4"
)

// OCI whiteout names (image-spec layer.md).
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// layerState is what the layer being applied has said so far.
type layerState struct {
	num       int
	entries   map[string]*layerEntry // by clean path, the latest entry
	whiteouts map[string]bool
	opaques   map[string]bool
	seals     []seal
	// deferred: hard links of this layer waiting for a target from a
	// lower layer share one reference per target.
	deferred map[string]*inodeRef
	// wanted: paths where links from higher layers found their target.
	wanted    map[string]bool
	providers []*layerEntry // hidden files and nodes links may need
}

func newLayerState(num int) *layerState {
	return &layerState{
		num:       num,
		entries:   map[string]*layerEntry{},
		whiteouts: map[string]bool{},
		opaques:   map[string]bool{},
		deferred:  map[string]*inodeRef{},
		wanted:    map[string]bool{},
	}
}

// layerEntry is one entry of the layer being applied.
type layerEntry struct {
	isDir bool
	ref   *inodeRef // non-directories: the inode the name stands for
	// Hidden files and nodes keep what is needed to write them later
	// under a hard link's name.
	hdr  *tar.Header
	path string
	typ  ext4.FileType
	ord  int
}

func (b *builder) apply(ls *layerState, ord int, hdr *tar.Header, data io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX defaults for later entries; archive/tar merges them
	}
	path, comps, err := cleanPath(hdr.Name)
	if err != nil {
		return err
	}
	if n := len(comps); n > 0 {
		if base := comps[n-1]; strings.HasPrefix(base, whiteoutPrefix) {
			return b.whiteout(ls, comps[:n-1], base)
		}
	}
	typ, err := fileType(hdr.Typeflag)
	if err != nil {
		return err
	}
	if ls.wanted[path] {
		return fmt.Errorf("appears again after a hard link from a higher layer took it as its target")
	}
	// Nothing may be written below a non-directory of the same layer.
	for i := 0; i < len(comps)-1; i++ {
		parent := prefix(path, comps, i+1)
		if e := ls.entries[parent]; e != nil && !e.isDir {
			return fmt.Errorf("parent %q is a %v in the same layer", parent, e.typ)
		}
	}
	nd, hiddenBy := b.root.find(comps)
	hidden := hiddenBy != 0
	if !hidden && nd != nil && nd.inImage && nd.isDir && typ != ext4.TypeDir {
		switch {
		case nd.explicitDir > ls.num:
			hidden = true // a higher layer made it a directory
		case nd.createdBy > ls.num:
			return fmt.Errorf("is a %v, but %s wrote %q below it", typ, b.layerName(nd.createdBy), nd.by.name)
		}
	}
	id := entryID{layer: ls.num, name: hdr.Name}
	if typ == ext4.TypeDir {
		return b.applyDir(ls, id, path, comps, hdr, nd, hidden, hiddenBy)
	}
	if len(comps) == 0 {
		return fmt.Errorf("the root must be a directory, not a %v", typ)
	}
	// A non-directory hides the path from lower layers, whether it is
	// visible or not.
	ls.seals = append(ls.seals, seal{comps: comps})
	e := &layerEntry{path: path, typ: typ, ord: ord}
	if typ == ext4.TypeHardLink {
		ref, err := b.linkRef(ls, id, hdr.Linkname)
		if err != nil {
			return err
		}
		e.ref = ref
	}
	ls.entries[path] = e
	if hidden {
		if typ != ext4.TypeHardLink {
			e.ref, e.hdr = &inodeRef{}, hdr
			ls.providers = append(ls.providers, e)
		}
		return b.resolveWants(ls, e, comps, hiddenBy, data)
	}
	if nd != nil && nd.inImage {
		b.dropReplaced(nd) // replaced within the layer
	}
	parent, err := b.ensureParents(id, path, comps)
	if err != nil {
		return err
	}
	nd = parent.child(comps[len(comps)-1])
	*nd = node{children: nd.children, inImage: true, createdBy: ls.num, by: id,
		sealedBy: nd.sealedBy, opaqueBy: nd.opaqueBy}
	if typ == ext4.TypeHardLink {
		if err := b.addName(e.ref, pendingName{path: path, node: nd}); err != nil {
			return err
		}
	} else {
		entry, err := toEntry(hdr, path, typ)
		if err != nil {
			return err
		}
		if err := b.account(hdr.Size); err != nil {
			return err
		}
		if err := b.w.Add(entry, data); err != nil {
			return err
		}
		e.ref = &inodeRef{path: path}
	}
	return b.resolveWants(ls, e, comps, hiddenBy, data)
}

func (b *builder) applyDir(ls *layerState, id entryID, path string, comps []string, hdr *tar.Header, nd *node, hidden bool, hiddenBy int) error {
	e := &layerEntry{isDir: true, path: path, typ: ext4.TypeDir}
	ls.entries[path] = e
	if err := b.resolveWants(ls, e, comps, hiddenBy, nil); err != nil {
		return err
	}
	if hidden {
		return nil
	}
	if len(comps) == 0 {
		nd = &b.root
	}
	if nd != nil && nd.inImage && nd.isDir {
		if nd.explicitDir != 0 && nd.explicitDir != ls.num {
			return nil // a higher layer's metadata wins
		}
		entry, err := toEntry(hdr, path, ext4.TypeDir)
		if err != nil {
			return err
		}
		nd.explicitDir = ls.num
		return b.w.Add(entry, nil)
	}
	if nd != nil && nd.inImage {
		b.dropReplaced(nd) // a non-directory of this layer, replaced
	}
	parent, err := b.ensureParents(id, path, comps)
	if err != nil {
		return err
	}
	entry, err := toEntry(hdr, path, ext4.TypeDir)
	if err != nil {
		return err
	}
	if err := b.w.Add(entry, nil); err != nil {
		return err
	}
	nd = parent.child(comps[len(comps)-1])
	*nd = node{children: nd.children, inImage: true, isDir: true, createdBy: ls.num, explicitDir: ls.num,
		by: id, sealedBy: nd.sealedBy, opaqueBy: nd.opaqueBy}
	return nil
}

// whiteout records a .wh. entry: it hides the named sibling (or, for the
// opaque marker, the directory's children) in lower layers only.
func (b *builder) whiteout(ls *layerState, dir []string, base string) error {
	if base == opaqueMarker {
		ls.opaques[strings.Join(dir, "/")] = true
		ls.seals = append(ls.seals, seal{comps: dir, opaque: true})
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("whiteout of %q", name)
	}
	comps := append(dir[:len(dir):len(dir)], name)
	ls.whiteouts[strings.Join(comps, "/")] = true
	ls.seals = append(ls.seals, seal{comps: comps})
	return nil
}

// ensureParents creates the directories above path that no layer has
// named yet, and returns the parent's node.
func (b *builder) ensureParents(id entryID, path string, comps []string) (*node, error) {
	cur := &b.root
	for i := 0; i < len(comps)-1; i++ {
		c := cur.child(comps[i])
		if !c.inImage {
			p := prefix(path, comps, i+1)
			if err := b.w.Add(ext4.Entry{Path: p, Type: ext4.TypeDir, Mode: 0o755}, nil); err != nil {
				return nil, err
			}
			c.inImage, c.isDir, c.createdBy, c.by = true, true, id.layer, id
		} else if !c.isDir {
			return nil, fmt.Errorf("parent %q is not a directory", prefix(path, comps, i+1))
		}
		cur = c
	}
	return cur, nil
}

// prefix returns the first n components of path without allocating.
func prefix(path string, comps []string, n int) string {
	l := n - 1
	for _, c := range comps[:n] {
		l += len(c)
	}
	return path[:l]
}
