// Package mailprobe is a small SMTP and IMAP client for the mail
// workload's monitor and for tests: read an SMTP banner, send a message
// and learn whether it was acknowledged (250), log in over IMAP and count
// or list messages by Message-ID or subject. Every function takes the dial
// function to use, so a test can reach a server inside a network
// namespace; the context's deadline bounds the whole exchange.
package mailprobe

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Dial opens a connection; (&net.Dialer{}).DialContext is one.
type Dial func(ctx context.Context, network, addr string) (net.Conn, error)

// DefaultDial dials from the caller's network namespace.
var DefaultDial Dial = (&net.Dialer{}).DialContext

// TLSDial returns a Dial whose connections speak TLS from the first byte
// (IMAPS on 993, SMTPS on 465), the server checked with cfg.
func TLSDial(dial Dial, cfg *tls.Config) Dial {
	if dial == nil {
		dial = DefaultDial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls: %w", err)
		}
		return tc, nil
	}
}

func connect(ctx context.Context, dial Dial, addr string) (net.Conn, error) {
	if dial == nil {
		dial = DefaultDial
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return conn, nil
}

// Banner reads the SMTP greeting at addr and returns its text; a greeting
// other than 220 is an error.
func Banner(ctx context.Context, dial Dial, addr string) (string, error) {
	conn, err := connect(ctx, dial, addr)
	if err != nil {
		return "", fmt.Errorf("smtp %s: %w", addr, err)
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)
	_, msg, err := tp.ReadResponse(220)
	if err != nil {
		return "", fmt.Errorf("smtp %s: banner: %w", addr, err)
	}
	_ = tp.PrintfLine("QUIT") // a goodbye: the banner is what the probe checks
	return msg, nil
}

// Message is a mail to send.
type Message struct {
	From, To, Subject, MessageID, Body string
}

// Bytes renders the message with CRLF line ends.
func (m Message) Bytes() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: %s\r\n\r\n",
		m.From, m.To, m.Subject, m.MessageID, time.Now().UTC().Format(time.RFC1123Z))
	for _, line := range strings.Split(strings.TrimRight(m.Body, "\n"), "\n") {
		b.WriteString(strings.TrimRight(line, "\r") + "\r\n")
	}
	return []byte(b.String())
}

// Send delivers m over SMTP (no authentication) and reports whether the
// server acknowledged the data with 250. A rejection (4xx, 5xx) gives
// false and an error wrapping *textproto.Error; so does a connection that
// breaks before the reply.
func Send(ctx context.Context, dial Dial, addr string, m Message) (bool, error) {
	conn, err := connect(ctx, dial, addr)
	if err != nil {
		return false, fmt.Errorf("smtp %s: %w", addr, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return false, fmt.Errorf("smtp %s: %w", addr, err)
	}
	defer c.Close()
	if err := c.Hello("probe.invalid"); err != nil {
		return false, fmt.Errorf("smtp %s: EHLO: %w", addr, err)
	}
	if err := c.Mail(m.From); err != nil {
		return false, fmt.Errorf("smtp %s: MAIL FROM: %w", addr, err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return false, fmt.Errorf("smtp %s: RCPT TO %s: %w", addr, m.To, err)
	}
	w, err := c.Data()
	if err != nil {
		return false, fmt.Errorf("smtp %s: DATA: %w", addr, err)
	}
	if _, err := w.Write(m.Bytes()); err != nil {
		return false, fmt.Errorf("smtp %s: DATA: %w", addr, err)
	}
	if err := w.Close(); err != nil {
		return false, fmt.Errorf("smtp %s: end of DATA: %w", addr, err)
	}
	c.Quit()
	return true, nil
}

// IMAP is a logged-in IMAP session.
type IMAP struct {
	conn net.Conn
	r    *bufio.Reader
	tag  int
	// literals are the literals of the last command's answers, as sent.
	literals [][]byte
}

// ErrIMAP wraps a NO or BAD answer.
var ErrIMAP = errors.New("imap")

// Login connects to addr, reads the greeting and logs in.
func Login(ctx context.Context, dial Dial, addr, user, password string) (*IMAP, error) {
	conn, err := connect(ctx, dial, addr)
	if err != nil {
		return nil, fmt.Errorf("imap %s: %w", addr, err)
	}
	c := &IMAP{conn: conn, r: bufio.NewReader(conn)}
	line, err := c.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "* OK") {
		conn.Close()
		return nil, fmt.Errorf("imap %s: greeting %q: %v", addr, strings.TrimSpace(line), err)
	}
	if _, err := c.cmd("LOGIN " + quote(user) + " " + quote(password)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("imap %s: login %s: %w", addr, user, err)
	}
	return c, nil
}

// Select opens a mailbox and returns how many messages it has.
func (c *IMAP) Select(mailbox string) (int, error) {
	lines, err := c.cmd("SELECT " + quote(mailbox))
	if err != nil {
		return 0, fmt.Errorf("imap: select %s: %w", mailbox, err)
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "*" && f[2] == "EXISTS" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("imap: select %s: no EXISTS", mailbox)
}

// Search returns the sequence numbers of the selected mailbox's messages
// whose header field contains value, e.g. Search("Message-ID", "<x@y>").
func (c *IMAP) Search(field, value string) ([]int, error) {
	lines, err := c.cmd("SEARCH HEADER " + quote(field) + " " + quote(value))
	if err != nil {
		return nil, fmt.Errorf("imap: search %s %s: %w", field, value, err)
	}
	var out []int
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "* SEARCH"); ok {
			for _, f := range strings.Fields(rest) {
				n, _ := strconv.Atoi(f)
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// MessageIDs returns the Message-ID of every message in the selected
// mailbox, in order.
func (c *IMAP) MessageIDs() ([]string, error) {
	lines, err := c.cmd("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
	if err != nil {
		if errors.Is(err, ErrIMAP) {
			return nil, nil // an empty mailbox has no 1:*
		}
		return nil, fmt.Errorf("imap: fetch: %w", err)
	}
	var out []string
	for _, l := range lines {
		if v, ok := cutFold(l, "Message-ID:"); ok {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out, nil
}

// Logout ends the session and closes the connection.
func (c *IMAP) Logout() error {
	_, err := c.cmd("LOGOUT")
	c.conn.Close()
	return err
}

// Fetch returns the selected mailbox's message seq byte for byte, as
// stored (BODY.PEEK[]: its \Seen flag stays as it was).
func (c *IMAP) Fetch(seq int) ([]byte, error) {
	if _, err := c.cmd(fmt.Sprintf("FETCH %d BODY.PEEK[]", seq)); err != nil {
		return nil, fmt.Errorf("imap: fetch %d: %w", seq, err)
	}
	if len(c.literals) != 1 {
		return nil, fmt.Errorf("imap: fetch %d: %d literals in the answer, want the message", seq, len(c.literals))
	}
	return c.literals[0], nil
}

// Command sends one IMAP command and returns its untagged answers; NO or
// BAD is an ErrIMAP error.
func (c *IMAP) Command(command string) ([]string, error) { return c.cmd(command) }

// cmd sends one tagged command and returns the untagged lines (literals
// inlined as lines, and kept as sent in c.literals) before its OK; NO or
// BAD is an error wrapping ErrIMAP.
func (c *IMAP) cmd(command string) ([]string, error) {
	c.literals = nil
	c.tag++
	tag := "t" + strconv.Itoa(c.tag)
	if _, err := fmt.Fprintf(c.conn, "%s %s\r\n", tag, command); err != nil {
		return nil, err
	}
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		line = strings.TrimRight(line, "\r\n")
		if n, ok := literalSize(line); ok {
			lit := make([]byte, n)
			if _, err := io.ReadFull(c.r, lit); err != nil {
				return lines, err
			}
			c.literals = append(c.literals, lit)
			lines = append(lines, line)
			lines = append(lines, strings.Split(strings.ReplaceAll(string(lit), "\r\n", "\n"), "\n")...)
			continue
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			if strings.HasPrefix(rest, "OK") {
				return lines, nil
			}
			return lines, fmt.Errorf("%w: %s", ErrIMAP, rest)
		}
		lines = append(lines, line)
	}
}

// literalSize recognises a line ending in an IMAP literal "{N}".
func literalSize(line string) (int, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(line[i+1 : len(line)-1])
	return n, err == nil
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func cutFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

// Inbox logs in, reads the Message-ID of every message in INBOX, and logs
// out.
func Inbox(ctx context.Context, dial Dial, addr, user, password string) ([]string, error) {
	c, err := Login(ctx, dial, addr, user, password)
	if err != nil {
		return nil, err
	}
	defer c.Logout()
	if _, err := c.Select("INBOX"); err != nil {
		return nil, err
	}
	return c.MessageIDs()
}
