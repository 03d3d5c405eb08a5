// relay-client.js (being built)
