//! Config validation tests: every mistake is reported, each with its line, column and key.

use super::*;
