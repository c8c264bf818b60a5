package stripeevent

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// scanner is a validating single-pass JSON reader that decodes only the values
// it is asked for and skips the rest without allocating.
//
// encoding/json validates the whole body and then decodes it again, through
// reflection; on a 6 KB Stripe event that is most of ingress's CPU budget per
// request. This reader accepts exactly the documents encoding/json accepts
// (RFC 8259, nesting up to 10,000 levels), which FuzzNormalize checks against
// json.Valid, and decodes strings the way encoding/json does, including the
// replacement of invalid UTF-8, so every string it returns is valid UTF-8 as
// protobuf requires. Unlike encoding/json it matches object keys exactly:
// Stripe's keys are lower-case, and a key that differs only in case is not
// the field.
type scanner struct {
	data  []byte
	pos   int
	depth int
}

const maxNestingDepth = 10000

// syntaxError reports where the body stopped being JSON.
type syntaxError struct {
	msg    string
	offset int
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.offset, e.msg)
}

func (s *scanner) fail(msg string) error {
	return &syntaxError{msg: msg, offset: s.pos}
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	if s.pos < len(s.data) && s.data[s.pos] > ' ' {
		return s.data[s.pos]
	}
	// Stripe pretty-prints its bodies: indentation is long runs of spaces.
	for s.pos+8 <= len(s.data) && binary.LittleEndian.Uint64(s.data[s.pos:]) == 0x2020202020202020 {
		s.pos += 8
	}
	for s.pos < len(s.data) {
		switch c := s.data[s.pos]; c {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return c
		}
	}
	return 0
}

// end checks that nothing but whitespace follows the top-level value.
func (s *scanner) end() error {
	if s.peek() != 0 {
		return s.fail("data after the top-level value")
	}
	return nil
}

// object calls field for each member of the object at the cursor; field must
// consume the member's value. The key slice is only valid during the call.
func (s *scanner) object(field func(key []byte) error) error {
	if s.peek() != '{' {
		return s.fail("want an object")
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	if s.peek() == '}' {
		s.pos++
		s.depth--
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.fail("want an object key")
		}
		key, err := s.key()
		if err != nil {
			return err
		}
		if s.peek() != ':' {
			return s.fail("want ':' after an object key")
		}
		s.pos++
		if err := field(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			s.depth--
			return nil
		default:
			return s.fail("want ',' or '}' in an object")
		}
	}
}

// array calls elem for each element of the array at the cursor; elem must
// consume the element.
func (s *scanner) array(elem func(i int) error) error {
	if s.peek() != '[' {
		return s.fail("want an array")
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	if s.peek() == ']' {
		s.pos++
		s.depth--
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.depth--
			return nil
		default:
			return s.fail("want ',' or ']' in an array")
		}
	}
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > maxNestingDepth {
		return s.fail("nested too deeply")
	}
	return nil
}

// skip consumes one value of any kind, validating it.
func (s *scanner) skip() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(func(int) error { return s.skip() })
	case c == '"':
		_, _, err := s.stringLiteral()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || isDigit(c):
		_, err := s.number()
		return err
	case c == 0:
		return s.fail("unexpected end of input")
	default:
		return s.fail("want a value")
	}
}

func (s *scanner) literal(word string) error {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.fail("invalid literal")
	}
	s.pos += len(word)
	return nil
}

// null consumes a null at the cursor and reports whether there was one.
func (s *scanner) null() bool {
	if s.peek() == 'n' && s.literal("null") == nil {
		return true
	}
	return false
}

// stringLiteral consumes a string and returns its bytes without the quotes.
// plain is true when they can be used as they are: no escapes, valid UTF-8.
func (s *scanner) stringLiteral() (raw []byte, plain bool, err error) {
	start := s.pos + 1
	plain = true
	ascii := true
	i := start
	for i < len(s.data) {
		if !stringSpecial[s.data[i]] {
			i++
			continue
		}
		c := s.data[i]
		switch {
		case c == '"':
			raw = s.data[start:i]
			s.pos = i + 1
			if !ascii && !utf8.Valid(raw) {
				plain = false
			}
			return raw, plain, nil
		case c == '\\':
			plain = false
			if i+1 >= len(s.data) {
				s.pos = i
				return nil, false, s.fail("unterminated escape")
			}
			switch s.data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s.data) || !isHex(s.data[i+2]) || !isHex(s.data[i+3]) || !isHex(s.data[i+4]) || !isHex(s.data[i+5]) {
					s.pos = i
					return nil, false, s.fail("invalid \\u escape")
				}
				i += 6
			default:
				s.pos = i
				return nil, false, s.fail("invalid escape")
			}
		case c < 0x20:
			s.pos = i
			return nil, false, s.fail("control character in string")
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			i++
		}
	}
	s.pos = i
	return nil, false, s.fail("unterminated string")
}

// key reads an object key. Escaped keys are unescaped so that they compare
// equal to the field they spell.
func (s *scanner) key() ([]byte, error) {
	start := s.pos
	raw, plain, err := s.stringLiteral()
	if err != nil || plain {
		return raw, err
	}
	var k string
	if err := json.Unmarshal(s.data[start:s.pos], &k); err != nil {
		return nil, s.fail("invalid key")
	}
	return []byte(k), nil
}

// number consumes a number and returns its literal.
func (s *scanner) number() ([]byte, error) {
	start := s.pos
	i := s.pos
	if i < len(s.data) && s.data[i] == '-' {
		i++
	}
	switch {
	case i < len(s.data) && s.data[i] == '0':
		i++
	case i < len(s.data) && s.data[i] >= '1' && s.data[i] <= '9':
		for i < len(s.data) && isDigit(s.data[i]) {
			i++
		}
	default:
		s.pos = i
		return nil, s.fail("invalid number")
	}
	if i < len(s.data) && s.data[i] == '.' {
		i++
		if i >= len(s.data) || !isDigit(s.data[i]) {
			s.pos = i
			return nil, s.fail("invalid number")
		}
		for i < len(s.data) && isDigit(s.data[i]) {
			i++
		}
	}
	if i < len(s.data) && (s.data[i] == 'e' || s.data[i] == 'E') {
		i++
		if i < len(s.data) && (s.data[i] == '+' || s.data[i] == '-') {
			i++
		}
		if i >= len(s.data) || !isDigit(s.data[i]) {
			s.pos = i
			return nil, s.fail("invalid number")
		}
		for i < len(s.data) && isDigit(s.data[i]) {
			i++
		}
	}
	s.pos = i
	return s.data[start:i], nil
}

// The readers below decode one value of the wanted kind into dst. A null
// leaves dst alone. A value of another kind is consumed and reported with
// ok=false, so the caller decides whether that is an error; err is only ever
// a syntax error.

func (s *scanner) str(dst *string) (ok bool, err error) {
	switch s.peek() {
	case '"':
		start := s.pos
		raw, plain, err := s.stringLiteral()
		if err != nil {
			return false, err
		}
		if plain {
			*dst = string(raw)
			return true, nil
		}
		// Escapes and invalid UTF-8 are rare in Stripe bodies; let
		// encoding/json apply its exact rules to them.
		if err := json.Unmarshal(s.data[start:s.pos], dst); err != nil {
			return false, s.fail("invalid string")
		}
		return true, nil
	case 'n':
		return true, s.literal("null")
	default:
		return false, s.skip()
	}
}

// int reads an integer that fits in int64. Like encoding/json into an int64,
// fractions, exponents and out-of-range values are the wrong kind.
func (s *scanner) int(dst *int64) (ok bool, err error) {
	switch c := s.peek(); {
	case c == '-' || isDigit(c):
		lit, err := s.number()
		if err != nil {
			return false, err
		}
		v, ok := parseInt64(lit)
		if ok {
			*dst = v
		}
		return ok, nil
	case c == 'n':
		return true, s.literal("null")
	default:
		return false, s.skip()
	}
}

func (s *scanner) bool(dst *bool) (ok bool, err error) {
	switch s.peek() {
	case 't':
		if err := s.literal("true"); err != nil {
			return false, err
		}
		*dst = true
		return true, nil
	case 'f':
		if err := s.literal("false"); err != nil {
			return false, err
		}
		*dst = false
		return true, nil
	case 'n':
		return true, s.literal("null")
	default:
		return false, s.skip()
	}
}

// objectOrSkip walks an object, and consumes anything else (null, or a shape
// this version does not have) as absent.
func (s *scanner) objectOrSkip(field func(key []byte) error) error {
	if s.peek() != '{' {
		return s.skip()
	}
	return s.object(field)
}

// arrayOrSkip is objectOrSkip for arrays.
func (s *scanner) arrayOrSkip(elem func(i int) error) error {
	if s.peek() != '[' {
		return s.skip()
	}
	return s.array(elem)
}

func parseInt64(lit []byte) (int64, bool) {
	neg := false
	if len(lit) > 0 && lit[0] == '-' {
		neg, lit = true, lit[1:]
	}
	if len(lit) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range lit {
		if !isDigit(c) {
			return 0, false
		}
		if v > (1<<63)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
		if v > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(v), true // -(1<<63) wraps to itself, which is MinInt64
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

// stringSpecial marks the bytes that end the fast path through a string: the
// quote, the backslash, control characters and non-ASCII.
var stringSpecial = func() (t [256]bool) {
	for c := range t {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf
	}
	return t
}()

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
