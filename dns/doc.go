// Package dns owns weaveDNS as the router runs it: the name table
// (dns/table), its replication to every other router (dns/replicate, a
// memberlist carried over the mesh), and the DNS server (dns/server) that
// containers reach at the router's service address. Service composes them;
// the daemon registers containers' names through it.
package dns
