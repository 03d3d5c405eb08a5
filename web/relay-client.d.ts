// relay-client.d.ts (being built)
