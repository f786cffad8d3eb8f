package image

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ProgressPrinter shows a pull as people expect from docker pull: on a
// terminal one line per layer, redrawn in place with a bar; elsewhere
// (a pipe, a log file) plain lines, one when a layer starts downloading
// and one when it is done, so logs are not flooded.
type ProgressPrinter struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	ref      string
	start    time.Time
	order    []string
	layers   map[string]*layerProgress
	drawn    int       // lines drawn by the last redraw (terminal)
	lastDraw time.Time // redraws are throttled to redrawEvery
	now      func() time.Time
}

type layerProgress struct {
	Progress
	announced bool // plain mode: the start line was printed
}

// redrawEvery bounds terminal redraws: a fast local pull would otherwise
// spend its time drawing.
const redrawEvery = 100 * time.Millisecond

// NewProgressPrinter writes to w; tty selects the in-place display.
func NewProgressPrinter(w io.Writer, tty bool) *ProgressPrinter {
	return &ProgressPrinter{w: w, tty: tty, layers: map[string]*layerProgress{}, now: time.Now}
}

// Start announces the pull of ref.
func (p *ProgressPrinter) Start(ref string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ref, p.start = ref, p.now()
	fmt.Fprintf(p.w, "Pulling %s\n", ref)
}

// Update takes one Progress report (PullOptions.Progress); safe for
// concurrent use.
func (p *ProgressPrinter) Update(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.layers[pr.Digest]
	if !ok {
		l = &layerProgress{}
		p.layers[pr.Digest] = l
		p.order = append(p.order, pr.Digest)
	}
	l.Progress = pr
	if p.tty {
		if pr.Done || p.now().Sub(p.lastDraw) >= redrawEvery {
			p.redraw()
		}
		return
	}
	switch {
	case pr.Cached:
		fmt.Fprintf(p.w, "%s: Already exists\n", shortHex(pr.Digest))
	case pr.Done:
		fmt.Fprintf(p.w, "%s: Pull complete (%s)\n", shortHex(pr.Digest), humanBytes(pr.Size))
	case !l.announced:
		fmt.Fprintf(p.w, "%s: Downloading (%s)\n", shortHex(pr.Digest), humanBytes(pr.Size))
	}
	l.announced = true
}

// Finish ends the display with the outcome.
func (p *ProgressPrinter) Finish(img *Image, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.redraw()
	}
	if err != nil {
		return // the caller reports the error
	}
	fmt.Fprintf(p.w, "Pulled %s: %s (%s in %s)\n", p.ref, img.Digest, humanBytes(img.Size),
		p.now().Sub(p.start).Round(time.Millisecond))
}

// redraw rewrites the layer lines in place (cursor up, clear line).
func (p *ProgressPrinter) redraw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	for _, d := range p.order {
		fmt.Fprintf(&b, "\x1b[2K%s\n", p.layers[d].line())
	}
	p.drawn = len(p.order)
	p.lastDraw = p.now()
	io.WriteString(p.w, b.String())
}

// line is a layer's terminal line: "0123456789ab: Downloading [===>  ] 1.2MiB/3.4MiB".
func (l *layerProgress) line() string {
	id := shortHex(l.Digest)
	switch {
	case l.Cached:
		return id + ": Already exists"
	case l.Done:
		return fmt.Sprintf("%s: Pull complete %s", id, humanBytes(l.Size))
	}
	const width = 30
	filled := 0
	if l.Size > 0 {
		filled = int(min(l.Written, l.Size) * width / l.Size)
	}
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	return fmt.Sprintf("%s: Downloading [%s] %s/%s", id, bar, humanBytes(l.Written), humanBytes(l.Size))
}

// shortHex is the first 12 hex digits of a digest, as docker shows layers.
func shortHex(digest string) string {
	_, hex, _ := strings.Cut(digest, ":")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

// humanBytes formats a size as docker does, in binary units: "1.2 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v, i = v/unit, i+1
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}
