package vmruntime

import "testing"

func TestMirrored(t *testing.T) {
	a := &Adapter{Mirrors: map[string]string{"index.docker.io": "127.0.0.1:5000"}}
	for in, want := range map[string]string{
		"busybox":                     "127.0.0.1:5000/library/busybox:latest",
		"docker.io/library/nginx:1.2": "127.0.0.1:5000/library/nginx:1.2",
		"quay.io/x/y:1":               "quay.io/x/y:1",
	} {
		got, err := a.mirrored(in)
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	if got, _ := (&Adapter{}).mirrored("busybox"); got != "busybox" {
		t.Errorf("without mirrors: %q", got)
	}
	if _, err := a.mirrored("UPPER/case"); err == nil {
		t.Error("an invalid reference must fail")
	}
}
