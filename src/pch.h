// Precompiled header for the library and the programs linked to it: libtorch takes ~20 s per
// translation unit to parse, so it is parsed once here. Public headers under include/ stay light.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
