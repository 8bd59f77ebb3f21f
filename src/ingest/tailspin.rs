//! Tailspin Toys dataset (being written).
