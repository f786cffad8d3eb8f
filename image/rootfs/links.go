package rootfs

import (
	"fmt"
	"io"
	"slices"

	"github.com/vk-applevm/vk-applevm/image/ext4"
)

// inodeRef stands for one inode of the final image while hard links to it
// are being collected, possibly before it is written.
type inodeRef struct {
	path    string        // where the inode is in the image; "" until written
	pending []pendingName // names to give it once written
	forward *inodeRef     // set when merged into another reference
}

// pendingName is an image path that will be a hard link once its inode is
// written.
type pendingName struct {
	path string
	node *node
}

// want is a hard link waiting for its target from a lower layer.
type want struct {
	from   entryID
	target string
	layer  int
	ref    *inodeRef
}

func resolve(r *inodeRef) *inodeRef {
	for r.forward != nil {
		r = r.forward
	}
	return r
}

// linkRef finds the inode a hard link entry of the layer names: an earlier
// entry of the same layer, or, unless this layer removed it before the
// link, whatever the lower layers have at that path.
func (b *builder) linkRef(ls *layerState, id entryID, linkname string) (*inodeRef, error) {
	target, comps, err := cleanPath(linkname)
	if err != nil {
		return nil, fmt.Errorf("hard link target: %w", err)
	}
	if len(comps) == 0 {
		return nil, fmt.Errorf("hard link to the root directory")
	}
	if e := ls.entries[target]; e != nil {
		if e.isDir {
			return nil, fmt.Errorf("hard link to directory %q", target)
		}
		return e.ref, nil
	}
	if ls.whiteouts[target] {
		return nil, fmt.Errorf("hard link target %q was whited out earlier in the layer", target)
	}
	for i := 0; i < len(comps)-1; i++ {
		p := prefix(target, comps, i+1)
		if ls.whiteouts[p] || ls.opaques[p] {
			return nil, fmt.Errorf("hard link target %q: %q was whited out earlier in the layer", target, p)
		}
		if e := ls.entries[p]; e != nil && !e.isDir {
			return nil, fmt.Errorf("hard link target %q: %q is a %v in the layer", target, p, e.typ)
		}
	}
	if ls.opaques[""] {
		return nil, fmt.Errorf("hard link target %q: the layer's root is opaque", target)
	}
	if r := ls.deferred[target]; r != nil {
		return r, nil
	}
	r := &inodeRef{}
	ls.deferred[target] = r
	b.wants[target] = append(b.wants[target], &want{from: id, target: target, layer: ls.num, ref: r})
	return r, nil
}

// addName gives the inode of r the name pn, now if it is written, else
// once it is.
func (b *builder) addName(r *inodeRef, pn pendingName) error {
	r = resolve(r)
	if r.path == "" {
		r.pending = append(r.pending, pn)
		pn.node.pendingLink = r
		return nil
	}
	pn.node.pendingLink = nil
	return b.w.Add(ext4.Entry{Path: pn.path, Type: ext4.TypeHardLink, LinkTarget: r.path}, nil)
}

// merge makes from an alias of into, moving its waiting names over.
func (b *builder) merge(from, into *inodeRef) error {
	from, into = resolve(from), resolve(into)
	if from == into {
		return nil
	}
	if from.path != "" {
		return fmt.Errorf("internal error: merging a written inode (%s)", from.path)
	}
	from.forward = into
	pending := from.pending
	from.pending = nil
	for _, pn := range pending {
		if err := b.addName(into, pn); err != nil {
			return err
		}
	}
	return nil
}

// dropReplaced forgets names at and below nd that an entry of the same
// layer is replacing before their inode was written.
func (b *builder) dropReplaced(nd *node) {
	if nd.pendingLink != nil {
		r := resolve(nd.pendingLink)
		r.pending = slices.DeleteFunc(r.pending, func(pn pendingName) bool { return pn.node == nd })
		nd.pendingLink = nil
	}
	for _, c := range nd.children {
		b.dropReplaced(c)
	}
	nd.children = nil
}

// resolveWants hands e, the entry at its path in this layer, to the links
// of higher layers that were waiting for it. A hidden file they need is
// written now, under the first link's name.
func (b *builder) resolveWants(ls *layerState, e *layerEntry, comps []string, hiddenBy int, data io.Reader) error {
	ws := b.wants[e.path]
	if len(ws) == 0 {
		return nil
	}
	var keep []*want
	var taken []*want
	for _, w := range ws {
		// A layer between this one and the link's hid the path: the
		// link's target was gone by then.
		if w.layer > ls.num && (hiddenBy == 0 || hiddenBy >= w.layer) {
			taken = append(taken, w)
		} else {
			keep = append(keep, w)
		}
	}
	if len(taken) == 0 {
		return nil
	}
	if len(keep) == 0 {
		delete(b.wants, e.path)
	} else {
		b.wants[e.path] = keep
	}
	if e.isDir {
		w := taken[0]
		return fmt.Errorf("is a directory, the target of a hard link from %s entry %q", b.layerName(w.layer), w.from.name)
	}
	ls.wanted[e.path] = true
	for _, w := range taken {
		if err := b.merge(w.ref, e.ref); err != nil {
			return err
		}
	}
	if e.hdr != nil && e.typ != ext4.TypeHardLink {
		return b.materialize(e, data)
	}
	return nil
}

// materialize writes a hidden file or node under the first name waiting
// for it and links the others, if any name waits.
func (b *builder) materialize(e *layerEntry, data io.Reader) error {
	r := resolve(e.ref)
	if r.path != "" || len(r.pending) == 0 {
		return nil
	}
	first := r.pending[0]
	entry, err := toEntry(e.hdr, first.path, e.typ)
	if err != nil {
		return err
	}
	if err := b.account(e.hdr.Size); err != nil {
		return err
	}
	if err := b.w.Add(entry, data); err != nil {
		return err
	}
	r.path = first.path
	first.node.pendingLink = nil
	rest := r.pending[1:]
	r.pending = nil
	for _, pn := range rest {
		if err := b.addName(r, pn); err != nil {
			return err
		}
	}
	return nil
}

// endLayer writes the hidden nodes the layer's own links need and leaves
// hidden regular files whose data has passed for a second read.
func (b *builder) endLayer(ls *layerState) error {
	for _, e := range ls.providers {
		r := resolve(e.ref)
		if r.path != "" || len(r.pending) == 0 {
			continue
		}
		if e.typ == ext4.TypeRegular && e.hdr.Size > 0 {
			b.second[ls.num] = append(b.second[ls.num], e)
			continue
		}
		if err := b.materialize(e, nil); err != nil {
			return fmt.Errorf("entry %q: %w", e.hdr.Name, err)
		}
	}
	return nil
}
