//! Unit tests of the engine against in-memory IAM and stores (filled in below).
