// Forwarding header: other layers include kernels/attention/attention.h, which declares the
// naive path's masks (kernels/attention/naive/masks.h). autograd/attention.cpp still names
// this path; it can go once that file includes attention.h only.
#pragma once
#include "kernels/attention/attention.h"
