#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "seqgan/error.h"
#include "train/state.h"

using namespace seqgan;

TEST(TrainState, NonFiniteLossesAreSkippedThenStopTheRun) {
  TrainState st;
  EXPECT_FALSE(st.skip_nonfinite(1.5, 3));
  EXPECT_TRUE(st.skip_nonfinite(std::numeric_limits<double>::quiet_NaN(), 3));
  EXPECT_TRUE(st.skip_nonfinite(std::numeric_limits<double>::infinity(), 3));
  EXPECT_EQ(st.nonfinite_in_row, 2);
  EXPECT_FALSE(st.skip_nonfinite(0.5, 3));  // a finite loss resets the count
  EXPECT_EQ(st.nonfinite_in_row, 0);
  EXPECT_TRUE(st.skip_nonfinite(NAN, 3));
  EXPECT_TRUE(st.skip_nonfinite(NAN, 3));
  try {
    st.skip_nonfinite(NAN, 3);
    FAIL() << "the third non-finite loss in a row must stop the run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("3 non-finite losses in a row"), std::string::npos) << e.what();
  }
}
