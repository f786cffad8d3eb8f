package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// Capability bitmaps read from the test VM's sysfs (QEMU q35, Debian's
// cloud kernel 6.1): /sys/class/input/inputN/capabilities/{ev,key}.
const (
	acpiButtonEV  = "3"
	acpiButtonKey = "10000000000000 0"
	atKeyboardEV  = "120013"
	atKeyboardKey = "402000002 3803078f800d001 feffffdfffefffff fffffffffffffffe"
)

func TestCapabilityHas(t *testing.T) {
	tests := []struct {
		bitmap string
		bit    int
		want   bool
	}{
		{acpiButtonKey, keyPower, true},
		{acpiButtonKey, keyA, false},
		{acpiButtonKey, 0, false},
		{acpiButtonEV, evKey, true},
		{acpiButtonEV, 0, true},
		{acpiButtonEV, 2, false},
		{atKeyboardKey, keyPower, true},
		{atKeyboardKey, keyA, true},
		{atKeyboardKey, 64*3 + 1, true},   // 0x402000002, bit 1 of the top word
		{atKeyboardKey, 64*3 + 35, false}, // past the highest bit printed
		{atKeyboardKey, 64 * 4, false},    // a word that was left out (zero)
		{"", keyPower, false},
		{"zz", 0, false},
		{acpiButtonKey, -1, false},
	}
	for _, tt := range tests {
		if got := capabilityHas(tt.bitmap, tt.bit); got != tt.want {
			t.Errorf("capabilityHas(%q, %d) = %v, want %v", tt.bitmap, tt.bit, got, tt.want)
		}
	}
}

func TestIsPowerButton(t *testing.T) {
	if !isPowerButton(acpiButtonEV, acpiButtonKey) {
		t.Error("the ACPI power button is not recognised")
	}
	if isPowerButton(atKeyboardEV, atKeyboardKey) {
		t.Error("the AT keyboard (it declares KEY_POWER too) is taken for a power button")
	}
	if isPowerButton("1", "0") || isPowerButton("0", acpiButtonKey) {
		t.Error("a device without KEY_POWER or without EV_KEY is taken for a power button")
	}
}

// inputEvent encodes one struct input_event as a 64-bit kernel writes it.
func inputEvent(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventSize)
	binary.NativeEndian.PutUint64(b[0:], 1764380000) // tv_sec
	binary.NativeEndian.PutUint64(b[8:], 123456)     // tv_usec
	binary.NativeEndian.PutUint16(b[16:], typ)
	binary.NativeEndian.PutUint16(b[18:], code)
	binary.NativeEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestReadPowerPresses(t *testing.T) {
	const evSyn = 0
	var stream bytes.Buffer
	for _, ev := range [][]byte{
		inputEvent(evKey, keyPower, 1), inputEvent(evSyn, 0, 0), // press
		inputEvent(evKey, keyPower, 2),                          // autorepeat: not a new press
		inputEvent(evKey, keyPower, 0), inputEvent(evSyn, 0, 0), // release
		inputEvent(evKey, keyA, 1),     // another key
		inputEvent(4, keyPower, 1),     // EV_MSC with the same code
		inputEvent(evKey, keyPower, 1), // second press
	} {
		stream.Write(ev)
	}
	for name, r := range map[string]io.Reader{
		"whole":        bytes.NewReader(stream.Bytes()),
		"byte by byte": iotest.OneByteReader(bytes.NewReader(stream.Bytes())),
	} {
		presses := 0
		err := readPowerPresses(r, func() { presses++ })
		if presses != 2 {
			t.Errorf("%s: %d presses, want 2", name, presses)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: end of the device: %v, want ErrUnexpectedEOF", name, err)
		}
	}
	boom := errors.New("device gone")
	if err := readPowerPresses(iotest.ErrReader(boom), func() {}); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
}

func TestInputEventName(t *testing.T) {
	for name, want := range map[string]bool{"event0": true, "event12": true, "input2": false, "event": false, "eventx": false, "../event1": false} {
		if got := inputEventName(name); got != want {
			t.Errorf("inputEventName(%q) = %v", name, got)
		}
	}
}
