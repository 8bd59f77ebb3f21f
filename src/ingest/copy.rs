//! COPY loader (being written).
