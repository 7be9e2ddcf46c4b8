package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// Errors of Authenticate. Both mean 401.
var (
	ErrNoCredentials  = errors.New("no credentials")
	ErrBadCredentials = errors.New("invalid credentials")
)

// Authenticator accepts API keys (X-API-Key header, or Authorization:
// Bearer with a key) and JWTs (Authorization: Bearer). Either may be nil.
type Authenticator struct {
	Keys *KeyStore
	JWT  *JWTVerifier
}

// Authenticate returns the principal of the request's credentials.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request) (Principal, error) {
	if k := r.Header.Get("X-API-Key"); k != "" {
		return a.apiKey(k)
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, ErrNoCredentials
	}
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return Principal{}, ErrBadCredentials
	}
	cred = strings.TrimSpace(cred)
	// A JWT is three base64url segments; an API key of ours has no dots.
	if strings.Count(cred, ".") == 2 {
		if a.JWT == nil {
			return Principal{}, ErrBadCredentials
		}
		p, err := a.JWT.Verify(ctx, cred)
		if err != nil {
			return Principal{}, errors.Join(ErrBadCredentials, err)
		}
		return p, nil
	}
	return a.apiKey(cred)
}

func (a *Authenticator) apiKey(k string) (Principal, error) {
	if a.Keys == nil {
		return Principal{}, ErrBadCredentials
	}
	p, ok := a.Keys.Lookup(k)
	if !ok {
		return Principal{}, ErrBadCredentials
	}
	return p, nil
}
