"""Real servers for the tests: a scriptable upstream speaking HTTP/1.1, and Chorus itself."""
