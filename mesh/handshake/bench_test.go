package handshake

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// BenchmarkSession measures Send/Recv throughput over TCP loopback, plain
// and sealed, for small and large messages.
func BenchmarkSession(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		for _, size := range []int{128, 1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("sealed=%v/%dB", sealed, size), func(b *testing.B) {
				var psk *PSK
				if sealed {
					psk = pskSecret()
				}
				cs, ss := mustPair(b, "tcp", testConfig(1, psk), testConfig(2, psk))
				msg := make([]byte, size)
				errc := make(chan error, 1)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				go func() {
					for range b.N {
						if err := cs.Send(msg); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
				for range b.N {
					if _, err := ss.Recv(); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkHandshake measures a whole handshake over TCP loopback.
func BenchmarkHandshake(b *testing.B) {
	for _, password := range []bool{false, true} {
		b.Run(fmt.Sprintf("password=%v", password), func(b *testing.B) {
			var psk *PSK
			if password {
				psk = pskSecret()
			}
			for range b.N {
				c, s := connPair(b, "tcp")
				errc := make(chan error, 1)
				go func() {
					ss, err := Server(context.Background(), s, testConfig(2, psk))
					if err == nil {
						ss.Close()
					}
					errc <- err
				}()
				cs, err := Client(context.Background(), c, testConfig(1, psk))
				if err != nil {
					b.Fatal(err)
				}
				cs.Close()
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeriveKey is the cost of one Argon2id run, which is also the
// least cost of one offline password guess.
func BenchmarkDeriveKey(b *testing.B) {
	for range b.N {
		DeriveKey([]byte("secret"), nil)
	}
}

// BenchmarkAEAD compares the candidate AEADs for the control stream.
func BenchmarkAEAD(b *testing.B) {
	key := make([]byte, 32)
	chacha, _ := chacha20poly1305.New(key)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	for _, a := range []struct {
		name string
		aead cipher.AEAD
	}{{"chacha20poly1305", chacha}, {"aes-256-gcm", gcm}} {
		for _, size := range []int{128, 1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/%dB", a.name, size), func(b *testing.B) {
				nonce := make([]byte, a.aead.NonceSize())
				msg := make([]byte, size)
				buf := make([]byte, 0, size+a.aead.Overhead())
				b.SetBytes(int64(size))
				for range b.N {
					buf = a.aead.Seal(buf[:0], nonce, msg, nil)
				}
			})
		}
	}
}
