package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"path"
	"strconv"
	"strings"
)

// Linux input constants (include/uapi/linux/input-event-codes.h).
const (
	evKey    = 0x01 // EV_KEY
	keyPower = 116  // KEY_POWER
	// keyA is KEY_A: keyboards (the i8042 AT keyboard of QEMU's q35) also
	// declare KEY_POWER, a power button declares no letters.
	keyA = 30
)

// inputEventSize is struct input_event on 64-bit guests (amd64, arm64):
// struct timeval (16 bytes), __u16 type, __u16 code, __s32 value
// (include/uapi/linux/input.h).
const inputEventSize = 24

// capabilityHas reports whether bit n is set in an input capability bitmap
// as sysfs prints it (/sys/class/input/inputN/capabilities/*): hex words of
// the kernel's unsigned long, most significant first, leading zero words
// left out (drivers/input/input.c, input_print_bitmap).
func capabilityHas(bitmap string, n int) bool {
	words := strings.Fields(bitmap)
	i := len(words) - 1 - n/bits.UintSize
	if n < 0 || i < 0 {
		return false
	}
	w, err := strconv.ParseUint(words[i], 16, bits.UintSize)
	return err == nil && w&(1<<(n%bits.UintSize)) != 0
}

// isPowerButton says whether an input device with these event-type and
// key capability bitmaps is a power button: it sends EV_KEY KEY_POWER and
// is not a keyboard. This covers ACPI's "Power Button" (the button
// driver, which QEMU's system_powerdown presses) and a gpio-keys power key
// (arm64 device trees) without depending on their names.
func isPowerButton(ev, key string) bool {
	return capabilityHas(ev, evKey) && capabilityHas(key, keyPower) && !capabilityHas(key, keyA)
}

// readPowerPresses reads input events from r until it fails and calls
// press for every KEY_POWER press (value 1; 0 is the release, 2 a repeat).
func readPowerPresses(r io.Reader, press func()) error {
	// evdev returns whole events; read several at a time.
	buf := make([]byte, 16*inputEventSize)
	var pending []byte
	for {
		n, err := r.Read(buf)
		pending = append(pending, buf[:n]...)
		for len(pending) >= inputEventSize {
			ev := pending[:inputEventSize]
			typ := binary.NativeEndian.Uint16(ev[16:18])
			code := binary.NativeEndian.Uint16(ev[18:20])
			value := int32(binary.NativeEndian.Uint32(ev[20:24]))
			if typ == evKey && code == keyPower && value == 1 {
				press()
			}
			pending = pending[inputEventSize:]
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("read input events: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("read input events: %w", err)
		}
	}
}

// inputEventName checks that name is an evdev node name (eventN).
func inputEventName(name string) bool {
	n, ok := strings.CutPrefix(path.Base(name), "event")
	_, err := strconv.Atoi(n)
	return ok && err == nil && path.Base(name) == name
}
