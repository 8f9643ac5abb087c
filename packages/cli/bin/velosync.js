#!/usr/bin/env node
// npm links package bins during install, before `prepare` has built dist/, and skips a
// bin whose file does not exist yet; this committed file always exists.
import '../dist/main.js'
