// app.js (being built)
