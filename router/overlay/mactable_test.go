package overlay

import (
	"sync"
	"testing"
)

func TestMACTable(t *testing.T) {
	tb := newMACTable(DefaultMACTableSize)
	m1, m2 := macKey(mac(1, 1)), macKey(mac(1, 2))
	if _, ok := tb.lookup(m1); ok {
		t.Fatal("empty table found an entry")
	}
	if _, moved := tb.learn(m1, 10, 100); moved {
		t.Fatal("new entry reported as moved")
	}
	tb.learn(m2, 10, 100)
	if p, ok := tb.lookup(m1); !ok || p != 10 {
		t.Fatalf("lookup %v %v", p, ok)
	}
	if _, moved := tb.learn(m1, 10, 200); moved {
		t.Fatal("refresh reported as move")
	}
	if prev, moved := tb.learn(m1, 11, 300); !moved || prev != 10 {
		t.Fatalf("move: prev %v moved %v", prev, moved)
	}
	if p, _ := tb.lookup(m1); p != 11 {
		t.Fatalf("after move owner %v", p)
	}
	// m2 last seen at 100, m1 at 300: expiring before 200 drops only m2
	if n := tb.expire(200); n != 1 {
		t.Fatalf("expired %d", n)
	}
	if _, ok := tb.lookup(m2); ok {
		t.Fatal("expired entry still there")
	}
	if _, ok := tb.lookup(m1); !ok || tb.len() != 1 {
		t.Fatal("fresh entry expired")
	}
}

func TestMACTableConcurrent(t *testing.T) {
	tb := newMACTable(DefaultMACTableSize)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := uint64(i % 300)
				tb.learn(k, 1+identityFor(g), int64(i))
				tb.lookup(k)
			}
		}()
	}
	wg.Wait()
	if tb.len() != 300 {
		t.Fatalf("entries %d", tb.len())
	}
}

func identityFor(g int) P { return P(g) }

func BenchmarkMACLookup(b *testing.B) {
	tb := newMACTable(DefaultMACTableSize)
	for i := range 1000 {
		tb.learn(uint64(i), 5, 1)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := uint64(0)
		for pb.Next() {
			tb.learn(i%1000, 5, 1)
			tb.lookup((i + 7) % 1000)
			i++
		}
	})
}
