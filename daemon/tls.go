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

// tlsLayer carries Raft over mutual TLS: a peer is accepted, and dialled,
// only with a certificate signed by the cluster's CA.
type tlsLayer struct {
	ln        net.Listener
	advertise net.Addr
	client    *tls.Config
}

func newTLSLayer(bind string, advertise net.Addr, tc *tls.Config) (*tlsLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	return &tlsLayer{ln: tls.NewListener(ln, tc), advertise: advertise, client: tc}, nil
}

func (l *tlsLayer) Accept() (net.Conn, error) { return l.ln.Accept() }
func (l *tlsLayer) Close() error              { return l.ln.Close() }
func (l *tlsLayer) Addr() net.Addr            { return l.advertise }

func (l *tlsLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(addr))
	if err != nil {
		return nil, err
	}
	c := l.client.Clone()
	c.ServerName = host
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), c)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// tcpLayer is Raft's plain TCP stream layer, with the advertised address
// of --raft (raft's own TCP transport would refuse an unspecified one).
type tcpLayer struct {
	ln        net.Listener
	advertise net.Addr
}

func newTCPLayer(bind string, advertise net.Addr) (*tcpLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	return &tcpLayer{ln: ln, advertise: advertise}, nil
}

func (l *tcpLayer) Accept() (net.Conn, error) { return l.ln.Accept() }
func (l *tcpLayer) Close() error              { return l.ln.Close() }
func (l *tcpLayer) Addr() net.Addr            { return l.advertise }

func (l *tcpLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
