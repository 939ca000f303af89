// Swift bridging header: makes the edgedistill C API (native/include/edgedistill.h) callable from Swift.
// Xcode: Build Settings > Swift Compiler - General > Objective-C Bridging Header = path/to/this file, and add
// native/include to Header Search Paths. Only checked here as C (gcc -fsyntax-only); no Xcode or swiftc.
#include "edgedistill.h"
