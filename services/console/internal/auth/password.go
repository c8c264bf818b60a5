package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's recommended minimum of 19 MiB, two passes,
// one lane. They are stored in each hash, so raising them later leaves old
// hashes readable.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	saltLen      = 16
)

// Password bounds: long enough to resist guessing, short enough that a
// huge body cannot keep argon2 busy.
const (
	MinPasswordLength = 12
	MaxPasswordLength = 256
)

// ErrWeakPassword is a password outside the bounds.
var ErrWeakPassword = fmt.Errorf("a password needs %d to %d characters", MinPasswordLength, MaxPasswordLength)

// CheckPasswordRules says whether p may be set as a password.
func CheckPasswordRules(p string) error {
	if n := utf8.RuneCountInString(p); n < MinPasswordLength || len(p) > MaxPasswordLength {
		return ErrWeakPassword
	}
	return nil
}

// HashPassword returns p's argon2id hash in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$key).
func HashPassword(p string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(p), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

var errBadHash = errors.New("not an argon2id hash")

// VerifyPassword reports whether p matches hash. A malformed hash matches
// nothing.
func VerifyPassword(hash, p string) bool {
	if len(p) > MaxPasswordLength {
		return false
	}
	params, salt, key, err := parseHash(hash)
	if err != nil {
		return false
	}
	got := argon2.IDKey([]byte(p), salt, params.time, params.memory, params.threads, uint32(len(key))) // #nosec G115 -- parseHash accepts keys of 16 to 64 bytes only
	return subtle.ConstantTimeCompare(got, key) == 1
}

// DummyVerify costs what VerifyPassword costs, for an unknown email, so the
// time a failure takes does not tell which emails have accounts.
func DummyVerify(p string) { VerifyPassword(dummyHash, p) }

var dummyHash, _ = HashPassword("not a password anyone has")

type argonParams struct {
	time, memory uint32
	threads      uint8
}

func parseHash(hash string) (argonParams, []byte, []byte, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return argonParams{}, nil, nil, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return argonParams{}, nil, nil, errBadHash
	}
	var p argonParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return argonParams{}, nil, nil, errBadHash
	}
	// Bounds, so a tampered row cannot make a sign-in allocate gigabytes.
	if p.memory == 0 || p.memory > 1<<20 || p.time == 0 || p.time > 10 || p.threads == 0 {
		return argonParams{}, nil, nil, errBadHash
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[4])
	if err != nil {
		return argonParams{}, nil, nil, errBadHash
	}
	key, err := enc.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return argonParams{}, nil, nil, errBadHash
	}
	return p, salt, key, nil
}

// OneTimePassword returns a random password to be changed at first
// sign-in: 20 characters from an alphabet without look-alikes.
func OneTimePassword() (string, error) {
	const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("one-time password: %w", err)
	}
	for i := range b {
		// 256 is not a multiple of len(alphabet); the bias is < 1% per
		// character and irrelevant at 20 characters of ~5.8 bits.
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b), nil
}
