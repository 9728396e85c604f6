// NumPy's .npy arrays and .npz archives (numpy.save / savez / savez_compressed), the format of
// ADM's reference batches (guided-diffusion's evaluator: arr_0 images, mu, sigma, mu_s, sigma_s).
//
// An .npz is a zip of NAME.npy members, stored or deflated; the zip is read and written through
// libzip. An .npy is a magic string, a version, a header length and a Python-literal header
// dict {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded to 64 bytes, then the data.
// The header is parsed strictly (no general Python evaluation): the three keys and nothing else,
// a dtype seqgan can hold (bool, int8/16/32/64, uint8, float16/32/64; either byte order), a
// shape whose element count fits and matches the data. Object arrays ('O'), structured dtypes and
// anything else are refused with a message naming the problem.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

namespace seqgan::npz {

// One .npy image in memory -> a contiguous CPU tensor in C order, in the native byte order.
// `source` names the array in errors ("ref.npz:arr_0").
at::Tensor parse_npy(const uint8_t* data, size_t size, const std::string& source);
// A CPU tensor -> .npy bytes (version 1.0, little-endian, C order).
std::string npy_bytes(const at::Tensor& tensor);

// The arrays of an .npz by member name without ".npy" (members of other names are refused).
std::map<std::string, at::Tensor> load(const std::string& path);
// The same from the bytes of an .npz; `source` names it in errors.
std::map<std::string, at::Tensor> parse(const std::string& bytes, const std::string& source);
// Writes an .npz atomically (a temporary file renamed over `path`); members are deflated when
// `compressed` (savez_compressed), stored otherwise (savez).
void save(const std::string& path, const std::map<std::string, at::Tensor>& arrays, bool compressed);

}  // namespace seqgan::npz
