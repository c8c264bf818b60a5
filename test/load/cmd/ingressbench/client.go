package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// rawClient posts over one keep-alive HTTP/1.1 connection, writing each
// request with a single write and reading the answer with
// http.ReadResponse. It spends far less CPU than net/http's Transport (no
// per-connection goroutines), which matters when the load generator shares
// two cores with the system it measures.
type rawClient struct {
	addr, host, path string
	conn             net.Conn
	br               *bufio.Reader
	req              []byte
}

func newRawClient(target string) (*rawClient, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%s: only http:// targets are supported", target)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &rawClient{addr: addr, host: u.Host, path: u.RequestURI(), req: make([]byte, 0, 64<<10)}, nil
}

// post sends body with the signature header and returns the status and up
// to len(answer) bytes of the answer's body.
func (c *rawClient) post(body []byte, sig string, answer []byte) (int, int, error) {
	for attempt := 0; ; attempt++ {
		code, n, err := c.try(body, sig, answer)
		if err == nil {
			return code, n, nil
		}
		c.close()
		// A keep-alive connection the server closed between requests is
		// not an error of this request; anything else is.
		if attempt > 0 || !errors.Is(err, errStaleConn) {
			return 0, 0, err
		}
	}
}

var errStaleConn = errors.New("connection closed before the answer")

func (c *rawClient) try(body []byte, sig string, answer []byte) (int, int, error) {
	fresh := false
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 10*time.Second)
		if err != nil {
			return 0, 0, err
		}
		c.conn, c.br, fresh = conn, bufio.NewReaderSize(conn, 4096), true
	}
	r := append(c.req[:0], "POST "...)
	r = append(r, c.path...)
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, c.host...)
	r = append(r, "\r\nUser-Agent: ingressbench\r\nContent-Type: application/json; charset=utf-8\r\nStripe-Signature: "...)
	r = append(r, sig...)
	r = append(r, "\r\nContent-Length: "...)
	r = strconv.AppendInt(r, int64(len(body)), 10)
	r = append(r, "\r\n\r\n"...)
	r = append(r, body...)
	c.req = r
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write(r); err != nil {
		if !fresh {
			return 0, 0, errStaleConn
		}
		return 0, 0, err
	}
	code, n, closeAfter, err := readAnswer(c.br, answer)
	if err != nil {
		if !fresh && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return 0, 0, errStaleConn
		}
		return 0, 0, err
	}
	if closeAfter {
		c.close()
	}
	return code, n, nil
}

// readAnswer reads one HTTP/1.1 response with a Content-Length body (what
// ingress always sends: short, complete answers), copying up to len(answer)
// bytes of the body. It is a fraction of http.ReadResponse's cost: no
// header map, no body wrapper.
func readAnswer(br *bufio.Reader, answer []byte) (code, n int, closeAfter bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.Atoi(string(value))
			if err != nil {
				return 0, 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			closeAfter = bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, 0, false, fmt.Errorf("unsupported Transfer-Encoding %q", value)
		}
	}
	if length < 0 {
		return 0, 0, false, errors.New("answer without Content-Length")
	}
	n = min(length, len(answer))
	if _, err := io.ReadFull(br, answer[:n]); err != nil {
		return 0, 0, false, err
	}
	if _, err := br.Discard(length - n); err != nil {
		return 0, 0, false, err
	}
	return code, n, closeAfter, nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// bytesTrim is for error messages.
func bytesTrim(b []byte) string { return string(bytes.TrimSpace(b)) }
