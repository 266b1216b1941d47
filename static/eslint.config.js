// The dashboard's lint (`npm run lint`, run by scripts/test.sh): typescript-eslint's recommended rules
// and React's hook rules (types are tsc's job: `npm run typecheck`). The generated API types are not
// linted: openapi-typescript writes them from server/api/openapi.json (`npm run gen:api`).
import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'src/openapi.gen.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.{ts,tsx}'],
    plugins: { 'react-hooks': reactHooks },
    rules: {
      ...reactHooks.configs.recommended.rules,
      // `const { a: _a, ...rest } = x` drops a key on purpose.
      '@typescript-eslint/no-unused-vars': ['error', { varsIgnorePattern: '^_', argsIgnorePattern: '^_' }],
    },
  },
);
