package image

import (
	"errors"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Errors callers test with errors.Is. Pull wraps them together with the
// registry's own error text, so messages keep the detail.
var (
	// ErrNotFound: no such image, tag or repository (in the registry for
	// Pull, in the store for Get and Remove).
	ErrNotFound = errors.New("image not found")
	// ErrUnauthorized: the registry refused the credentials, or wants some.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNoPlatform: the image index offers no manifest for the platform.
	ErrNoPlatform = errors.New("no matching platform")
	// ErrInvalidReference: the image reference does not parse (the
	// kubelet's InvalidImageName).
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrDigestMismatch: downloaded content does not hash to its digest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrPlainHTTP: a request would have used plain HTTP to a registry that
	// is neither loopback nor listed as insecure.
	ErrPlainHTTP = errors.New("plain HTTP not allowed for this registry")
	// ErrUnsupported: the registry served a manifest kind we cannot run
	// (Docker schema 1, artifacts).
	ErrUnsupported = errors.New("unsupported manifest")
)

// Distribution spec error codes that mean "absent" or "not allowed"
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes).
var (
	notFoundCodes     = map[transport.ErrorCode]bool{transport.ManifestUnknownErrorCode: true, transport.NameUnknownErrorCode: true, transport.BlobUnknownErrorCode: true}
	unauthorizedCodes = map[transport.ErrorCode]bool{transport.UnauthorizedErrorCode: true, transport.DeniedErrorCode: true}
)

// registryErrorKind maps a go-containerregistry error to one of our
// sentinel errors, or nil when it is none of them (network errors, 5xx).
func registryErrorKind(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return nil
	}
	for _, d := range te.Errors {
		switch {
		case notFoundCodes[d.Code]:
			return ErrNotFound
		case unauthorizedCodes[d.Code]:
			return ErrUnauthorized
		}
	}
	switch te.StatusCode {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	}
	return nil
}
