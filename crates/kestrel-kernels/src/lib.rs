pub use kestrel_gguf::GgmlType;
