pub mod benign;
pub mod ftw;
pub mod payloads;
pub mod text;
