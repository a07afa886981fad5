"""Dataset plumbing both tasks share: folder pairing, seeded joint transforms, procedural textures."""
