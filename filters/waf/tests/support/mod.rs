pub mod ftw;
