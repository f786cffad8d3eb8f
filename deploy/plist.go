// Package deploy holds the files that install vk-applevm as a service
// (launchd on macOS, systemd on Linux), the entitlements its macOS binaries
// are signed with, the RBAC a cluster may need, and deploy/kina's join and
// leave scripts; its tests, and cmd/vk-applevm's against the CLI's flags,
// check them.
package deploy

import (
	"bytes"
	"encoding/xml"
	"fmt"
)

// ParsePlist decodes an XML property list into Go values (dict →
// map[string]any, array → []any, string/integer → string, true/false →
// bool): enough to check on Linux, which has no plutil, what launchd and
// codesign will read.
func ParsePlist(data []byte) (any, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("no <plist>: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "plist" {
			v, _, err := plistValue(d)
			return v, err
		}
	}
}

// plistValue reads the next value; end reports a closing tag instead.
func plistValue(d *xml.Decoder) (v any, end bool, err error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, false, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil, true, nil
		case xml.StartElement:
			switch t.Name.Local {
			case "dict":
				m := map[string]any{}
				for {
					k, end, err := plistValue(d)
					if err != nil {
						return nil, false, err
					}
					if end {
						return m, false, nil
					}
					key, ok := k.(plistKey)
					if !ok {
						return nil, false, fmt.Errorf("dict entry without <key>: %v", k)
					}
					val, end, err := plistValue(d)
					if err != nil || end {
						return nil, false, fmt.Errorf("key %q without a value (%v)", key, err)
					}
					m[string(key)] = val
				}
			case "array":
				var a []any
				for {
					e, end, err := plistValue(d)
					if err != nil {
						return nil, false, err
					}
					if end {
						return a, false, nil
					}
					a = append(a, e)
				}
			case "true", "false":
				if err := d.Skip(); err != nil {
					return nil, false, err
				}
				return t.Name.Local == "true", false, nil
			case "key", "string", "integer":
				var s string
				if err := d.DecodeElement(&s, &t); err != nil {
					return nil, false, err
				}
				if t.Name.Local == "key" {
					return plistKey(s), false, nil
				}
				return s, false, nil
			default:
				return nil, false, fmt.Errorf("unexpected <%s>", t.Name.Local)
			}
		}
	}
}

type plistKey string
