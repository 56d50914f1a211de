package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hashicorp/raft"
)

// peerTLS builds the TLS of the calls between nodes. With --tls-ca, every
// node presents its --tls-cert and accepts only peers whose certificate the
// CA signed (mutual TLS); with --tls-cert alone the API is HTTPS and the
// node calls its peers' HTTPS API trusting the system's roots.
func peerTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("cannot load --tls-cert/--tls-key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSCA != "" {
		pem, err := os.ReadFile(cfg.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("cannot read --tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("--tls-ca holds no PEM certificate")
		}
		tc.RootCAs = pool
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// streamLayer carries Raft over TCP, or over mutual TLS when tls is set:
// then a peer is accepted, and dialled, only with a certificate signed by
// the cluster's CA. It advertises the address of --raft (raft's own TCP
// transport would refuse an unspecified one).
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	tls       *tls.Config
}

func newStreamLayer(bind string, advertise net.Addr, tc *tls.Config) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return &streamLayer{ln: ln, advertise: advertise, tls: tc}, nil
}

func (l *streamLayer) Accept() (net.Conn, error) { return l.ln.Accept() }
func (l *streamLayer) Close() error              { return l.ln.Close() }
func (l *streamLayer) Addr() net.Addr            { return l.advertise }

func (l *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if l.tls == nil {
		return d.Dial("tcp", string(addr))
	}
	host, _, err := net.SplitHostPort(string(addr))
	if err != nil {
		return nil, err
	}
	c := l.tls.Clone()
	c.ServerName = host
	return tls.DialWithDialer(d, "tcp", string(addr), c)
}
