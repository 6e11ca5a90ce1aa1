// gocheck is an independent Go implementation of what the sealed-secrets controller and
// kubeseal do with keys and values, using only Go's standard library. kvseal's tests run it:
//
//	gocheck verify-key KEY.pem CERT.pem   parse as keyutil.ParsePrivateKeyPEM and x509 do;
//	                                      print the certificate's NotBefore (Unix seconds)
//	gocheck seal CERT.pem LABEL           seal stdin; print base64
//	gocheck open KEY.pem LABEL            open base64 from stdin; print the plaintext
//
// The format is written from kvseal's docs/format.md, not copied from sealed-secrets.
package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gocheck: "+format+"\n", args...)
	os.Exit(1)
}

// parsePrivateKeyPEM follows k8s.io/client-go/util/keyutil.ParsePrivateKeyPEM: the first
// block that parses as an RSA key (PKCS#1 or PKCS#8) wins; other blocks are skipped.
func parsePrivateKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no valid RSA private key")
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			if key, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
				return key, nil
			}
		case "PRIVATE KEY":
			if key, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
				if rsaKey, ok := key.(*rsa.PrivateKey); ok {
					return rsaKey, nil
				}
			}
		}
	}
}

func parseCertificate(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no certificate")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

func readFile(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	return data
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: gocheck verify-key KEY CERT | seal CERT LABEL | open KEY LABEL")
	}
	switch os.Args[1] {
	case "verify-key":
		key, err := parsePrivateKeyPEM(readFile(os.Args[2]))
		if err != nil {
			fail("key: %v", err)
		}
		if err := key.Validate(); err != nil {
			fail("key: %v", err)
		}
		cert, err := parseCertificate(readFile(os.Args[3]))
		if err != nil {
			fail("certificate: %v", err)
		}
		pub, ok := cert.PublicKey.(*rsa.PublicKey)
		if !ok || !pub.Equal(&key.PublicKey) {
			fail("the certificate's key is not the private key's")
		}
		if cert.SerialNumber.Sign() <= 0 {
			fail("serial number is not positive")
		}
		if !cert.IsCA || cert.SignatureAlgorithm != x509.SHA256WithRSA || cert.KeyUsage&x509.KeyUsageEncipherOnly == 0 {
			fail("not the controller's certificate template")
		}
		if err := cert.CheckSignatureFrom(cert); err != nil && !errors.As(err, new(x509.ConstraintViolationError)) {
			fail("self-signature: %v", err)
		}
		if time.Now().After(cert.NotAfter) {
			fail("expired")
		}
		fmt.Println(cert.NotBefore.Unix())
	case "seal":
		cert, err := parseCertificate(readFile(os.Args[2]))
		if err != nil {
			fail("certificate: %v", err)
		}
		plaintext, _ := io.ReadAll(os.Stdin)
		sessionKey := make([]byte, 32)
		if _, err := rand.Read(sessionKey); err != nil {
			fail("%v", err)
		}
		rsaCiphertext, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, cert.PublicKey.(*rsa.PublicKey), sessionKey, []byte(os.Args[3]))
		if err != nil {
			fail("%v", err)
		}
		block, _ := aes.NewCipher(sessionKey)
		gcm, _ := cipher.NewGCM(block)
		out := make([]byte, 2, 2+len(rsaCiphertext)+len(plaintext)+16)
		binary.BigEndian.PutUint16(out, uint16(len(rsaCiphertext)))
		out = append(out, rsaCiphertext...)
		out = gcm.Seal(out, make([]byte, gcm.NonceSize()), plaintext, nil)
		fmt.Print(base64.StdEncoding.EncodeToString(out))
	case "open":
		key, err := parsePrivateKeyPEM(readFile(os.Args[2]))
		if err != nil {
			fail("key: %v", err)
		}
		text, _ := io.ReadAll(os.Stdin)
		value, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(text)))
		if err != nil {
			fail("base64: %v", err)
		}
		if len(value) < 2 {
			fail("too short")
		}
		n := int(binary.BigEndian.Uint16(value))
		if len(value) < n+2 {
			fail("too short")
		}
		sessionKey, err := rsa.DecryptOAEP(sha256.New(), rand.Reader, key, value[2:n+2], []byte(os.Args[3]))
		if err != nil {
			fail("rsa: %v", err)
		}
		block, err := aes.NewCipher(sessionKey)
		if err != nil {
			fail("%v", err)
		}
		gcm, _ := cipher.NewGCM(block)
		plaintext, err := gcm.Open(nil, make([]byte, gcm.NonceSize()), value[n+2:], nil)
		if err != nil {
			fail("gcm: %v", err)
		}
		os.Stdout.Write(plaintext)
	default:
		fail("unknown command %q", os.Args[1])
	}
}
